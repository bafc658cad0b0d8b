"""Shared fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.audit import generate_key_file
from postveil.harness.net import free_port


@pytest.fixture
def config(tmp_path: Path) -> Path:
    key = tmp_path / "audit.key"
    generate_key_file(key)
    path = tmp_path / "postveil.yaml"
    path.write_text(
        f"audit:\n  directory: {tmp_path / 'audit'}\n  key_file: {key}\n"
        f"policyd:\n  cache_path: {tmp_path / 'facts.sqlite3'}\n  postfix_version: '3.7.11'\n"
        # DNS points at a closed loopback port, because no command here may query a resolver.
        f"dns:\n  nameservers: ['127.0.0.1:{free_port()}']\n"
    )
    return path
