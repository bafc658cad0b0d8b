"""``postveil`` subcommands whose stdout reader goes away, as in ``postveil ... | head -4``.

Each command runs as its own process with stdout on a pipe whose read end is already
closed, so its first write fails with EPIPE however small the output is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from postveil.audit import generate_key_file
from postveil.harness.net import free_port

EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE (13), the status a shell shows for a command that SIGPIPE ended."""


def postveil_to_closed_pipe(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "postveil.cli.main", *args],
            env={**os.environ, "POSTVEIL_CONFIG": str(config)},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A configuration with one overridden domain, so that every command has output."""
    directory = tmp_path_factory.mktemp("broken-pipe")
    key = directory / "audit.key"
    generate_key_file(key)
    path = directory / "postveil.yaml"
    path.write_text(
        f"audit:\n  directory: {directory / 'audit'}\n  key_file: {key}\n"
        f"policyd:\n  cache_path: {directory / 'facts.sqlite3'}\n  postfix_version: '3.7.11'\n"
        # DNS points at a closed loopback port, because no command here may query a resolver.
        f"dns:\n  nameservers: ['127.0.0.1:{free_port()}']\n"
    )
    subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "domain", "-c", str(path),
         "set", "example.org", "--tls", "encrypt"],
        check=True, capture_output=True, timeout=60,
    )
    return path


@pytest.mark.parametrize(
    "args",
    [
        ("domain", "show", "example.org"),
        ("domain", "show", "example.org", "--json"),
        ("domain", "list"),
        ("audit", "search", "--kind", "all"),
        ("audit", "search", "--kind", "admin_override", "--format", "csv"),
        ("audit", "report"),
        ("check-config",),
    ],
    ids=lambda args: " ".join(args),
)
def test_closed_stdout_exits_quietly(config: Path, args: tuple[str, ...]) -> None:
    if args == ("check-config",):
        args = ("check-config", str(config))

    result = postveil_to_closed_pipe(config, *args)

    # check-config warns on stderr about paths missing on this host, so the check is
    # only that no traceback follows.
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert result.returncode == EXIT_BROKEN_PIPE
