"""Check an audit chain: every line's form, HMAC, sequence number and link.

Verification stops at the first broken link and names its file and line. An edited
record fails its canonical form or its HMAC on its own line. A deleted, reordered or
inserted record breaks ``seq`` or ``prev`` at the first line after the change. Records
cut from the end show up against ``audit.head``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from postveil.audit.chain import (
    ACTIVE_NAME,
    CHAIN_FIELDS,
    GENESIS_HASH,
    HEAD_NAME,
    AuditKey,
    InvalidHeadError,
    canonical_json,
    line_hash,
    read_head,
    signed_body,
)


@dataclass(frozen=True)
class BrokenLink:
    """The first place where the chain does not verify."""

    file: str
    line: int
    """1-based line number in ``file``; 0 when the problem is not on a line (head file)."""

    problem: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.problem}"


@dataclass
class VerifyResult:
    records: int = 0
    """Records that verified, all of them when ``broken`` is None."""

    files: list[str] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None
    broken: BrokenLink | None = None
    head_checked: bool = False
    gaps: int = 0
    """Places where records are missing between two given records (``selection`` only)."""

    @property
    def ok(self) -> bool:
        return self.broken is None


@dataclass
class _Position:
    file: str
    line: int
    seq: int
    hash: str


def verify_chain(
    files: Iterable[str | os.PathLike[str]],
    keys: Mapping[str, AuditKey],
    *,
    head: str | os.PathLike[str] | None = None,
    partial: bool = False,
    selection: bool = False,
) -> VerifyResult:
    """Verify ``files`` as consecutive parts of one chain, oldest first.

    ``keys`` maps key ids to keys (records name the key that signed them). ``head``,
    when given, is the ``audit.head`` to compare the end of the chain with. Unless
    ``partial``, the chain must start at seq 1; with it, the first record may link to
    earlier records that are not given (archived files).

    With ``selection`` the files are a search export: records may be missing before
    the first and between any two, and each place between two given records where
    some are missing counts in ``gaps``. Every record's form, HMAC and order are still
    checked, and the link of each record that directly follows another given record.
    What such a check cannot show is a record removed from the selection itself.
    """
    result = VerifyResult()
    previous: _Position | None = None
    expected_head = None
    head_problem: BrokenLink | None = None
    head_hash_seen: str | None = None
    if head is not None:
        try:
            expected_head = read_head(head, dict(keys))
            if expected_head is None:
                raise InvalidHeadError(
                    f"{head}: missing, so records cut from the end cannot be detected "
                    "(pass --no-head to verify without it)"
                )
        except InvalidHeadError as exc:
            # Reported after the records, whose own problems are more specific.
            head_problem = BrokenLink(str(head), 0, str(exc).removeprefix(f"{head}: "))

    for path in files:
        name = str(path)
        result.files.append(name)
        try:
            handle = open(path, "rb")
        except OSError as exc:
            result.broken = BrokenLink(name, 0, f"cannot read: {exc.strerror}")
            return result
        with handle:
            for number, raw in enumerate(handle, start=1):
                position, problem = _check_line(
                    raw, name, number, previous, keys, partial or selection, selection
                )
                if problem is not None:
                    result.broken = BrokenLink(name, number, problem)
                    return result
                assert position is not None
                if previous is not None and position.seq > previous.seq + 1:
                    result.gaps += 1
                if result.first_seq is None:
                    result.first_seq = position.seq
                if expected_head is not None and position.seq == expected_head.seq:
                    head_hash_seen = position.hash
                result.records += 1
                result.last_seq = position.seq
                previous = position

    if head_problem is not None:
        result.broken = head_problem
    elif expected_head is not None:
        result.broken = _check_head(
            str(head), expected_head.seq, expected_head.hash, previous, head_hash_seen
        )
        result.head_checked = result.broken is None
    return result


def _check_line(
    raw: bytes,
    name: str,
    number: int,
    previous: _Position | None,
    keys: Mapping[str, AuditKey],
    partial: bool,
    selection: bool = False,
) -> tuple[_Position | None, str | None]:
    if not raw.endswith(b"\n"):
        return (
            None,
            "incomplete record at the end of the file (file truncated in the middle of a record)",
        )
    line = raw[:-1]
    try:
        fields = json.loads(line)
    except ValueError:
        return None, "not valid JSON (record edited or damaged)"
    if not isinstance(fields, dict):
        return None, "not a JSON object (record edited or damaged)"
    missing = [name for name in CHAIN_FIELDS if name not in fields]
    if missing:
        return None, f"missing field(s) {', '.join(missing)} (record edited or damaged)"
    if canonical_json(fields) != line:
        return None, "bytes differ from the form the writer produces (record edited)"
    key = keys.get(fields["key_id"])
    if key is None:
        return None, f"signed with key id {fields['key_id']}, which none of the given keys has"
    body, mac = signed_body(fields)
    if not key.matches(body, mac):
        return None, "HMAC does not match (record edited, or signed with another key)"

    seq = fields["seq"]
    if not isinstance(seq, int) or seq < 1:
        return None, f"invalid seq {seq!r} (record edited)"
    if previous is None:
        if seq == 1 and fields["prev"] != GENESIS_HASH:
            return None, "seq 1 does not start from the genesis hash (record edited)"
        if seq != 1 and not partial:
            return None, (
                f"the chain starts at seq {seq}, so {_records(1, seq - 1)} missing; if older "
                "files were archived, verify them together with these or pass --partial"
            )
    else:
        where = _describe(previous, name)
        if seq > previous.seq + 1 and selection:
            # The record it links to is not in the selection. The HMAC check above
            # already covers this record itself.
            return _Position(name, number, seq, line_hash(line)), None
        if seq > previous.seq + 1:
            return None, (
                f"seq {seq} follows seq {previous.seq} at {where}: "
                f"{_records(previous.seq + 1, seq - 1)} missing here (deleted, or moved out "
                "of order; a filtered 'audit search' export leaves records out, and verifies "
                "with --selection)"
            )
        if seq <= previous.seq:
            return None, (
                f"seq {seq} follows seq {previous.seq} at {where}: records are out of order "
                "or repeated"
            )
        if fields["prev"] != previous.hash:
            return None, (
                f"prev hash does not match the record before it at {where} (that record was "
                "replaced, or records were removed and re-signed)"
            )
    return _Position(name, number, seq, line_hash(line)), None


def _check_head(
    head: str, head_seq: int, head_hash: str, last: _Position | None, hash_seen: str | None
) -> BrokenLink | None:
    if last is None:
        return BrokenLink(
            head, 0, f"records up to seq {head_seq} were written but no record was found"
        )
    if head_seq > last.seq:
        return BrokenLink(
            last.file,
            last.line,
            f"the chain ends at seq {last.seq}, but {Path(head).name} shows records up to seq "
            f"{head_seq} were written: record(s) {_range(last.seq + 1, head_seq)} were removed "
            "from the end (file truncated)",
        )
    if hash_seen is not None and hash_seen != head_hash:
        return BrokenLink(
            head, 0, f"the record with seq {head_seq} differs from the one the head file names"
        )
    return None


def _describe(position: _Position, current_file: str) -> str:
    if position.file == current_file:
        return f"line {position.line}"
    return f"{position.file}:{position.line}"


def _range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def default_head_for(files: list[Path]) -> Path | None:
    """Return the ``audit.head`` next to the active file, when ``files`` ends with it.

    The writer creates the head with the first record, so verify treats a missing
    head next to an active file as a problem.
    """
    if not files or files[-1].name != ACTIVE_NAME:
        return None
    return files[-1].parent / HEAD_NAME


def _records(first: int, last: int) -> str:
    """Name a run of sequence numbers with its verb: "record 4 is", "records 4-6 are"."""
    if first == last:
        return f"record {first} is"
    return f"records {first}-{last} are"
