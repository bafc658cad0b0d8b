"""Synthetic identifiers that tests put in messages, and the scan that proves none leaked.

Tests that build a message with PHI import these constants instead of writing their
own values. ``tests/test_zz_no_phi_leak.py`` runs last and looks for every one of them
in every file the session wrote (logs, audit trails, maillogs). It fails naming the
file and the constant.

Files that contain message content by design, such as the messages a test writes for
its input, an SMTP sink's mailbox or a Postfix queue, must sit in a directory marked
with ``mark_message_store`` (or created by ``message_store_dir``); the scan skips
such directories. It also skips the queue directories of a Postfix instance
(``incoming``, ``active``, ``deferred`` and the like next to each other), but not the
maillog. Directories outside pytest's base temporary directory are scanned only when
registered with ``register_scan_dir``.

NOTE: the registry of extra directories lives in this process, so under pytest-xdist
each worker scans only its own registrations and its own base temporary directory.

None of the values below belongs to a real person. The SSN, card number and NPI have
valid formats (and check digits) so that detectors match them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SSN = "518-37-2964"
MRN = "MRN-70423189"
CARD_NUMBER = "4539 7120 3865 4416"
"""Luhn-valid, Visa-like prefix."""

NPI = "1682543974"
"""Luhn-valid with the 80840 prefix, as NPI check digits require."""

MEDICARE_MBI = "3KW7-HN2-RT48"
DATE_OF_BIRTH = "03/14/1957"
PATIENT_NAME = "Zebulon Quartermaine"
DIAGNOSIS_CODE = "ICD-10 E11.65"

PLANTED: dict[str, str] = {
    "SSN": SSN,
    "MRN": MRN,
    "CARD_NUMBER": CARD_NUMBER,
    "NPI": NPI,
    "MEDICARE_MBI": MEDICARE_MBI,
    "DATE_OF_BIRTH": DATE_OF_BIRTH,
    "PATIENT_NAME": PATIENT_NAME,
    "DIAGNOSIS_CODE": DIAGNOSIS_CODE,
}
"""Constant name -> value; the scan reports names only, so a failure leaks nothing."""

MESSAGE_STORE_MARKER = ".planted-values-expected"

_POSTFIX_QUEUE_DIRS = frozenset(
    {
        "maildrop",
        "incoming",
        "active",
        "deferred",
        "hold",
        "corrupt",
        "bounce",
        "defer",
        "trace",
        "saved",
    }
)
_CHUNK = 1 << 20

_scan_dirs: list[Path] = []


def register_scan_dir(path: str | os.PathLike[str]) -> None:
    """Add a log or audit directory outside pytest's base temporary directory to the scan."""
    _scan_dirs.append(Path(path))


def registered_scan_dirs() -> list[Path]:
    return list(_scan_dirs)


def mark_message_store(path: str | os.PathLike[str], reason: str) -> None:
    """Exclude directory ``path`` and everything below it from the scan.

    Use it for directories that contain messages on purpose.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MESSAGE_STORE_MARKER).write_text(reason + "\n")


def message_store_dir(parent: str | os.PathLike[str], name: str = "messages") -> Path:
    """Create a marked directory under ``parent`` for test messages that carry planted values."""
    directory = Path(parent) / name
    mark_message_store(directory, "test input messages")
    return directory


def value_variants(value: str) -> list[bytes]:
    """Forms of ``value`` to look for, lower-cased: as written, and with its separators
    (space, '-', '.', '/') replaced by each other or removed, since a log may
    normalise an identifier. A form shorter than 6 characters is left out."""
    lowered = value.lower()
    parts = re.split(r"[ ./-]", lowered)
    variants = {lowered}
    if len(parts) > 1:
        variants.update(separator.join(parts) for separator in ("", " ", "-", ".", "/"))
    return sorted(variant.encode("utf-8") for variant in variants if len(variant) >= 6)


def find_values(text: str) -> list[str]:
    """Return the names of the planted values that occur in ``text``."""
    lowered = text.lower().encode("utf-8")
    return [
        name
        for name, value in PLANTED.items()
        if any(variant in lowered for variant in value_variants(value))
    ]


@dataclass(frozen=True)
class Leak:
    path: Path
    name: str
    """Name of the planted constant found, never its value."""


def find_leaks(roots: Iterable[str | os.PathLike[str]]) -> list[Leak]:
    """Return every (file, constant name) where a planted value occurs, case-insensitively."""
    patterns = {name: value_variants(value) for name, value in PLANTED.items()}
    longest = max(len(variant) for variants in patterns.values() for variant in variants)
    leaks: list[Leak] = []
    for root in roots:
        for path in _files_to_scan(Path(root)):
            for name in _names_in_file(path, patterns, longest):
                leaks.append(Leak(path, name))
    return leaks


def _files_to_scan(root: Path) -> Iterable[Path]:
    if not root.is_dir():
        if root.is_file():
            yield root
        return
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        if MESSAGE_STORE_MARKER in files:
            subdirectories[:] = []
            continue
        if {"incoming", "active", "deferred"} <= set(subdirectories):
            subdirectories[:] = [name for name in subdirectories if name not in _POSTFIX_QUEUE_DIRS]
        for name in files:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _names_in_file(path: Path, patterns: dict[str, list[bytes]], overlap: int) -> set[str]:
    found: set[str] = set()
    try:
        with open(path, "rb") as handle:
            tail = b""
            while chunk := handle.read(_CHUNK):
                window = (tail + chunk).lower()
                for name, variants in patterns.items():
                    if name not in found and any(variant in window for variant in variants):
                        found.add(name)
                tail = window[-overlap:]
    except OSError:
        # A file removed during the scan, or one that cannot be read, has nothing to report.
        pass
    return found


def capture_session_logs(directory: str | os.PathLike[str]) -> logging.Handler:
    """Copy every log record of the session (DEBUG and up) into ``directory/session.log``.

    Returns the handler so the caller can remove it; the caller also lowers the root
    logger's level, since records below it never reach any handler.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(target / "session.log", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler
