"""Line format, hash chain, HMAC key and file layout shared by writer and verifier.

A record is one line: the canonical JSON of its fields (keys sorted, no spaces,
UTF-8), then ``\\n``. Its fields include ``prev``, the SHA-256 (hex) of the previous
line's bytes without the newline, and ``hmac``, the HMAC-SHA256 (hex) of the canonical
JSON of all other fields. The first record of a chain has ``seq`` 1 and ``prev`` of 64
zeros. Rotation does not restart the chain: the first line of a new file links to the
last line of the previous one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postveil.audit.errors import AuditKeyError
from postveil.keyfile import read_key_file, write_key_file

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64

ACTIVE_NAME = "audit.jsonl"
HEAD_NAME = "audit.head"
LOCK_NAME = "audit.lock"
_ROTATED_RE = re.compile(r"^audit\.(\d{12})\.jsonl$")

CHAIN_FIELDS = ("v", "seq", "time", "kind", "host", "program", "pid", "key_id", "prev", "hmac")
"""Fields the writer adds to every record, whatever its kind."""


_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""One encoder for all threads, because ``encode`` keeps no state between calls. Reusing
it saves building an encoder per call, which ``json.dumps`` does when given options."""


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` the one way the writer does: sorted keys, no spaces, UTF-8."""
    return _CANONICAL_ENCODER.encode(value).encode("utf-8")


def line_hash(line: bytes) -> str:
    """SHA-256 (hex) of a record line without its newline: the next record's ``prev``."""
    return hashlib.sha256(line).hexdigest()


def rotated_name(first_seq: int) -> str:
    return f"audit.{first_seq:012d}.jsonl"


def is_trail_file_name(name: str) -> bool:
    """Return whether ``name`` is the name the writer gives an audit file (active or
    rotated), as opposed to an export's."""
    return name == ACTIVE_NAME or _ROTATED_RE.match(name) is not None


def list_log_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Return the audit files of ``directory`` oldest first: rotated by first seq, then active."""
    base = Path(directory)
    rotated = []
    for entry in base.iterdir():
        match = _ROTATED_RE.match(entry.name)
        if match is not None:
            rotated.append((int(match.group(1)), entry))
    files = [path for _, path in sorted(rotated)]
    active = base / ACTIVE_NAME
    if active.exists():
        files.append(active)
    return files


@dataclass(frozen=True)
class AuditKey:
    """An HMAC-SHA256 key and its id, the first 16 hex digits of SHA-256 of the key."""

    secret: bytes
    key_id: str

    @classmethod
    def from_secret(cls, secret: bytes) -> AuditKey:
        return cls(secret=secret, key_id=hashlib.sha256(secret).hexdigest()[:16])

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, check_mode: bool = True) -> AuditKey:
        """Read a key file: 64 hex digits (32 bytes), optionally followed by a newline.

        Raises AuditKeyError when the file is missing or malformed, or, with
        ``check_mode``, when group or others may read or write it.
        """
        secret = read_key_file(
            path,
            name="audit HMAC key",
            create_hint="create one with 'postveil audit keygen'",
            error=AuditKeyError,
            forbidden_mode=0o077 if check_mode else None,
        )
        return cls.from_secret(secret)

    def sign(self, body: bytes) -> str:
        return hmac.new(self.secret, body, hashlib.sha256).hexdigest()

    def matches(self, body: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.sign(body), mac)


def generate_key_file(path: str | os.PathLike[str]) -> AuditKey:
    """Create a new random key file with mode 0600; an existing file is never overwritten.

    Raises FileExistsError when ``path`` exists and OSError when it cannot be written.
    """
    secret = write_key_file(path, 0o600)
    return AuditKey.from_secret(secret)


def seal(body: dict[str, Any], key: AuditKey) -> bytes:
    """Return the record line (without newline) for ``body`` signed with ``key``.

    The line is ``canonical_json`` of the fields with ``hmac`` added, and the HMAC
    covers the canonical JSON of the other fields. Sorted keys put ``hmac`` right
    after the members whose keys sort before it, so the line is the signed bytes with
    the ``hmac`` member inserted there.
    """
    fields = {**body, "key_id": key.key_id}
    fields.pop("hmac", None)
    signed = canonical_json(fields)
    # A hex digest needs no JSON escaping.
    member = b'"hmac":"' + key.sign(signed).encode("ascii") + b'"'
    before = {name: value for name, value in fields.items() if name < "hmac"}
    if before:
        # canonical_json(before) is "{" plus the same leading members of ``signed``
        # plus "}", so its closing brace sits where the rest of ``signed`` starts
        # (a "," or the final "}").
        end = len(canonical_json(before)) - 1
        return signed[:end] + b"," + member + signed[end:]
    if len(signed) == 2:
        return b"{" + member + b"}"
    return b"{" + member + b"," + signed[1:]


def signed_body(fields: dict[str, Any]) -> tuple[bytes, str]:
    """Split a parsed record into (bytes the HMAC covers, stored HMAC)."""
    body = dict(fields)
    mac = body.pop("hmac", "")
    return canonical_json(body), str(mac)


@dataclass(frozen=True)
class Head:
    """Contents of ``audit.head``: the last record the writers completed.

    The verifier compares it with the end of the chain, which detects records cut
    from the end of the active file (the chain alone cannot show those).
    """

    seq: int
    hash: str
    file: str


class InvalidHeadError(ValueError):
    """``audit.head`` is unreadable, malformed or fails its HMAC."""


HEAD_SIZE = 512
"""Bytes of ``audit.head``. The writer overwrites it in place with one pwrite of this
size, which is cheaper than a rename per record (a rename over an existing file makes
ext4 flush the new file's data)."""


def head_line(head: Head, time: str, key: AuditKey) -> bytes:
    """Return the signed head record, padded with spaces to HEAD_SIZE bytes.

    The bytes are those of ``seal`` over the fields ``seq``, ``hash``, ``file``,
    ``time`` and ``v``. The writer calls this once per batch, so for the usual field
    types the members are joined here in sorted key order, which costs one HMAC and
    no JSON encoding of a whole object.
    """
    texts = (head.hash, head.file, time, key.key_id)
    if type(head.seq) is int and all(type(text) is str for text in texts):
        before = b'{"file":' + _json_string(head.file) + b',"hash":' + _json_string(head.hash)
        after = b'"key_id":%s,"seq":%d,"time":%s,"v":%d}' % (
            _json_string(key.key_id),
            head.seq,
            _json_string(time),
            FORMAT_VERSION,
        )
        mac = key.sign(before + b"," + after).encode("ascii")
        line = before + b',"hmac":"' + mac + b'",' + after
    else:
        # Other types (a bool as seq, for one) are left to seal, which serialises any value.
        body = {
            "seq": head.seq,
            "hash": head.hash,
            "file": head.file,
            "time": time,
            "v": FORMAT_VERSION,
        }
        line = seal(body, key)
    return line + b" " * (HEAD_SIZE - 1 - len(line)) + b"\n"


def _json_string(text: str) -> bytes:
    """Return ``text`` serialised as ``canonical_json`` serialises a string."""
    return _CANONICAL_ENCODER.encode(text).encode("utf-8")


def read_head(path: str | os.PathLike[str], keys: dict[str, AuditKey]) -> Head | None:
    """Read and authenticate ``audit.head``; None when the file does not exist.

    Raises InvalidHeadError naming the problem when it exists but cannot be trusted.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidHeadError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_head(raw, path, keys)


def parse_head(raw: bytes, path: str | os.PathLike[str], keys: dict[str, AuditKey]) -> Head:
    """Authenticate the bytes of a head file; raises InvalidHeadError naming ``path``."""
    try:
        fields = json.loads(raw)
        seq, digest, file_name, key_id = (
            fields["seq"],
            fields["hash"],
            fields["file"],
            fields["key_id"],
        )
    except (ValueError, TypeError, KeyError):
        raise InvalidHeadError(f"{path}: not a valid head record") from None
    key = keys.get(key_id)
    if key is None:
        raise InvalidHeadError(
            f"{path}: signed with key id {key_id}, which none of the given keys has"
        )
    body, mac = signed_body(fields)
    if not key.matches(body, mac):
        raise InvalidHeadError(f"{path}: HMAC does not match (file edited)")
    if not isinstance(seq, int) or not isinstance(digest, str) or not isinstance(file_name, str):
        raise InvalidHeadError(f"{path}: not a valid head record")
    return Head(seq=seq, hash=digest, file=file_name)
