"""``postveil domain set/unset/purge --reason``: the admin_override record's fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from postveil.audit import AuditKey, list_log_files, verify_chain


def domain(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "domain", "-c", str(config), *args],
        env={**os.environ, "SUDO_USER": "alice"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def overrides(config: Path) -> list[dict[str, Any]]:
    lines = (config.parent / "audit" / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [record for record in records if record["kind"] == "admin_override"]


def test_reason_stored_apart_from_command(config: Path) -> None:
    set_result = domain(config, "set", "example.org", "--tls", "secure",
                        "--reason", "contract with example.org requires verified TLS")
    unset_result = domain(config, "unset", "example.org")
    purge_result = domain(config, "purge", "example.org", "--reason", "domain sold")

    assert set_result.returncode == 0, set_result.stderr
    assert unset_result.returncode == 0, unset_result.stderr
    assert purge_result.returncode == 0, purge_result.stderr
    records = overrides(config)
    assert [record["action"] for record in records] == [
        "set-tls", "clear-tls", "purge-domain-facts"]
    assert [record["reason"] for record in records] == [
        "contract with example.org requires verified TLS", "", "domain sold"]
    assert [record["command"] for record in records] == [
        "postveil domain set example.org --tls secure",
        "postveil domain unset example.org",
        "postveil domain purge example.org",
    ]
    assert {record["actor"] for record in records} == {"alice"}
    key = AuditKey.load(config.parent / "audit.key")
    assert verify_chain(list_log_files(config.parent / "audit"), {key.key_id: key}).ok


def test_invalid_reason_changes_nothing(config: Path) -> None:
    result = domain(config, "set", "example.org", "--tls", "secure", "--reason", "two\nlines")

    assert result.returncode == 1
    assert "audit record field reason: contains a control character" in result.stderr
    assert not (config.parent / "audit" / "audit.jsonl").exists()
    assert domain(config, "show", "example.org").returncode == 1
