"""The ``audit`` section: where the hash-chained audit trail lives and how it is written."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import model_validator

from postveil.config.types import Duration, Section, Size


class AuditSection(Section):
    directory: str = "/var/log/postveil/audit"
    """Directory of the audit files: ``audit.jsonl`` (active), ``audit.<first seq>.jsonl``
    (rotated), ``audit.head`` (last written record) and ``audit.lock``. Created with mode
    0750 when missing. Every process that writes records needs write access to it."""

    key_file: str = "/etc/postveil/audit.key"
    """HMAC-SHA256 key, 64 hex digits on one line, mode 0600 (``postveil audit keygen``
    creates it). It must live outside ``directory``, so that an account that can rewrite
    the log files cannot also read the key and sign altered records."""

    rotate_size: Size = 100_000_000
    """Start a new file when the active one would grow past this many bytes. 0 disables
    rotation by size."""

    rotate_age: Duration = 86400.0
    """Start a new file when the first record of the active one is older than this.
    Written with a unit, for example ``1d``; ``0s`` disables rotation by age."""

    fsync: Literal["always", "batch", "never"] = "always"
    """When records reach the disk. Every record is in the kernel (visible to other
    processes, safe from a daemon crash) before ``append`` returns, in every mode.

    - ``always``: ``append`` returns only after fdatasync, so a record survives a power
      failure as soon as the decision it describes takes effect.
    - ``batch``: each writing process calls fdatasync at most ``fsync_interval`` after
      an append (and when it closes the log). A power failure can lose the records of
      that interval.
    - ``never``: the kernel writes the pages back on its own schedule (Linux: about 30 s
      by default, ``vm.dirty_expire_centisecs``). A power failure can lose more.
    """

    fsync_interval: Duration = 1.0
    """Upper bound on how long a record stays unsynced with ``fsync: batch``."""

    on_write_failure: Literal["tempfail", "reject"] = "tempfail"
    """Reply of the milter when a message's record cannot be written (disk full, log not
    writable, lock failed). ``tempfail`` replies with 4xx, so the sending side keeps the
    message and retries; ``reject`` replies with 5xx, so the sender gets a bounce at once.
    The writer raises AuditWriteError in both cases; this key only picks the reply."""

    @model_validator(mode="after")
    def _check_key_outside_directory(self) -> AuditSection:
        directory = os.path.realpath(self.directory)
        key = os.path.realpath(self.key_file)
        if os.path.commonpath([directory, key]) == directory:
            raise ValueError(
                f"audit.key_file {self.key_file!r} is inside audit.directory "
                f"{self.directory!r}: keep the HMAC key outside the log directory, "
                "for example in /etc/postveil/"
            )
        return self
