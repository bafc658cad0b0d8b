"""The ``audit`` configuration section."""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.config import parse_config
from postveil.errors import ConfigError

REPOSITORY = Path(__file__).resolve().parents[2]


def test_sample_config_is_valid() -> None:
    config = parse_config(
        (REPOSITORY / "conf" / "postveil.yaml").read_bytes(), "conf/postveil.yaml"
    )
    assert config.audit.directory == "/var/log/postveil/audit"
    assert config.audit.rotate_size == 100_000_000
    assert config.audit.rotate_age == 86400.0
    assert config.audit.fsync == "always"
    assert config.audit.on_write_failure == "tempfail"


def test_defaults_keep_key_outside_directory() -> None:
    audit = parse_config(b"").audit
    assert not audit.key_file.startswith(audit.directory)


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        (
            "audit:\n  directory: /var/log/postveil\n"
            "  key_file: /var/log/postveil/keys/audit.key\n",
            "is inside audit.directory",
        ),
        (
            "audit:\n  directory: /var/log/postveil/\n"
            "  key_file: /var/log/postveil/../postveil/k\n",
            "is inside audit.directory",
        ),
        ("audit:\n  fsync: sometimes\n", "audit.fsync"),
        ("audit:\n  rotate_age: 3600\n", "invalid duration 3600"),
        ("audit:\n  rotate_size: lots\n", "invalid size 'lots'"),
        ("audit:\n  on_write_failure: accept\n", "audit.on_write_failure"),
        ("audit:\n  fsync_intervall: 1s\n", "unknown key"),
    ],
    ids=["key-inside", "key-inside-dotdot", "fsync", "age-unit", "size", "failure", "typo"],
)
def test_invalid_audit_section(yaml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(yaml.encode(), "test.yaml")
    assert expected in str(raised.value)


def test_key_next_to_directory_is_accepted() -> None:
    audit = parse_config(
        b"audit:\n  directory: /var/log/postveil\n  key_file: /var/log/postveil.key\n"
    ).audit
    assert audit.key_file == "/var/log/postveil.key"
