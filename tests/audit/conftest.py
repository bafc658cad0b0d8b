"""Fixtures for the audit trail tests: a key outside the log directory and a section."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from postveil.audit import AuditKey, MessageDecision, RecipientDecision, generate_key_file
from postveil.cli.main import main
from postveil.config.audit import AuditSection


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "audit.key"
    path.parent.mkdir()
    generate_key_file(path)
    return path


@pytest.fixture
def audit_key(key_file: Path) -> AuditKey:
    return AuditKey.load(key_file)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@pytest.fixture
def make_section(log_dir: Path, key_file: Path) -> Callable[..., AuditSection]:
    def make(**overrides: Any) -> AuditSection:
        settings: dict[str, Any] = {
            "directory": str(log_dir),
            "key_file": str(key_file),
            "rotate_age": "0s",
        }
        settings.update(overrides)
        return AuditSection(**settings)

    return make


def make_decision(number: int, **overrides: Any) -> MessageDecision:
    settings: dict[str, Any] = {
        "queue_id": f"4Fq{number:08d}",
        "message_id": f"<msg{number}@clinic.example>",
        "sender": "frontdesk@clinic.example",
        "recipients": [
            RecipientDecision("pat@patient.example", "tls", "rule:tls-verified"),
            RecipientDecision("lab@lab.example", "smime", "rule:smime-cert", fingerprint="ab" * 32),
        ],
        "detections": {"ssn": 1, "mrn": 2},
        "tags": ["subject:secure"],
        "config_version": "0123456789abcdef",
    }
    settings.update(overrides)
    return MessageDecision(**settings)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``postveil ARGS`` in this process; return (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(args))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run
