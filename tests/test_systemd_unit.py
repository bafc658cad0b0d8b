"""The shipped systemd unit: reload checks the file first, stop outlasts shutdown_timeout."""

from __future__ import annotations

import re
from pathlib import Path

from postveil.config import parse_config
from postveil.milter.daemon import EX_CONFIG

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "postveil-milter.service"


def unit_settings() -> list[tuple[str, str]]:
    """Return (key, value) pairs in file order; systemd allows a key more than once."""
    pairs = []
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def values_of(key: str) -> list[str]:
    return [value for name, value in unit_settings() if name == key]


def test_reload_checks_config_before_sighup() -> None:
    reload_commands = values_of("ExecReload")

    assert len(reload_commands) == 2
    assert reload_commands[0].endswith("postveil check-config /etc/postveil/postveil.yaml")
    assert reload_commands[1] == "/bin/kill -HUP $MAINPID"


def test_stop_timeout_exceeds_shutdown_timeout() -> None:
    (stop_timeout,) = values_of("TimeoutStopSec")
    match = re.fullmatch(r"(\d+)s?", stop_timeout)

    assert match is not None
    assert int(match.group(1)) > parse_config(b"").milter.shutdown_timeout


def test_network_online_is_wanted_and_awaited() -> None:
    assert "network-online.target" in values_of("Wants")
    assert "network-online.target" in values_of("After")


def test_exit_78_stops_restarts() -> None:
    assert values_of("RestartPreventExitStatus") == [str(EX_CONFIG)]


def test_documentation_points_at_installed_files() -> None:
    (documentation,) = values_of("Documentation")

    for entry in documentation.split():
        assert entry.startswith(("file:/usr/share/doc/postveil/", "man:")), entry
