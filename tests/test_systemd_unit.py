"""The shipped systemd units: reload checks the file first, stop outlasts shutdown_timeout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from postveil.config import parse_config
from postveil.milter.daemon import EX_CONFIG
from postveil.policyd.daemon import EXIT_CONFIG as POLICYD_EXIT_CONFIG

UNIT_DIR = Path(__file__).resolve().parents[1] / "systemd"
UNITS = ("postveil-milter.service", "postveil-policyd.service")
CONFIG_EXIT_STATUS = {
    "postveil-milter.service": EX_CONFIG,
    "postveil-policyd.service": POLICYD_EXIT_CONFIG,
}


def unit_settings(unit: str) -> list[tuple[str, str]]:
    """Return (key, value) pairs in file order; systemd allows a key more than once."""
    pairs = []
    for line in (UNIT_DIR / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def values_of(key: str, unit: str = "postveil-milter.service") -> list[str]:
    return [value for name, value in unit_settings(unit) if name == key]


@pytest.mark.parametrize("unit", UNITS)
def test_reload_checks_config_before_sighup(unit: str) -> None:
    reload_commands = values_of("ExecReload", unit)

    assert len(reload_commands) == 2
    assert reload_commands[0].endswith("postveil check-config /etc/postveil/postveil.yaml")
    assert reload_commands[1] == "/bin/kill -HUP $MAINPID"


def test_stop_timeout_exceeds_shutdown_timeout() -> None:
    (stop_timeout,) = values_of("TimeoutStopSec")
    match = re.fullmatch(r"(\d+)s?", stop_timeout)

    assert match is not None
    assert int(match.group(1)) > parse_config(b"").milter.shutdown_timeout


@pytest.mark.parametrize("unit", UNITS)
def test_network_online_is_wanted_and_awaited(unit: str) -> None:
    assert "network-online.target" in values_of("Wants", unit)
    assert "network-online.target" in values_of("After", unit)


@pytest.mark.parametrize("unit", UNITS)
def test_exit_78_stops_restarts(unit: str) -> None:
    assert values_of("RestartPreventExitStatus", unit) == [str(CONFIG_EXIT_STATUS[unit])]


@pytest.mark.parametrize("unit", UNITS)
def test_documentation_points_at_installed_files(unit: str) -> None:
    (documentation,) = values_of("Documentation", unit)

    for entry in documentation.split():
        assert entry.startswith(("file:/usr/share/doc/postveil/", "man:")), entry


CLASSIFIER_UNIT = "postveil-classifierd.service"


def test_classifier_unit_settings() -> None:
    from postveil.startup import EX_CONFIG as STARTUP_EX_CONFIG

    assert values_of("RestartPreventExitStatus", CLASSIFIER_UNIT) == [str(STARTUP_EX_CONFIG)]
    (runtime_directory,) = values_of("RuntimeDirectory", CLASSIFIER_UNIT)
    default_socket = parse_config(b"").classifier.socket
    assert default_socket.startswith(f"/run/{runtime_directory}/")
    assert values_of("ExecReload", CLASSIFIER_UNIT) == []
    (documentation,) = values_of("Documentation", CLASSIFIER_UNIT)
    assert documentation.startswith("file:/usr/share/doc/postveil/")


PORTAL_UNIT = "postveil-portal.service"


def test_portal_unit_settings() -> None:
    from postveil.portal.daemon import EX_CONFIG as PORTAL_EX_CONFIG
    from postveil.portal.daemon import STOP_GRACE

    assert values_of("Type", PORTAL_UNIT) == ["notify"]
    assert values_of("RestartPreventExitStatus", PORTAL_UNIT) == [str(PORTAL_EX_CONFIG)]
    assert values_of("ExecReload", PORTAL_UNIT) == []
    (exec_start,) = values_of("ExecStart", PORTAL_UNIT)
    assert exec_start.split()[0].endswith("/postveil-portal")
    (stop_timeout,) = values_of("TimeoutStopSec", PORTAL_UNIT)
    assert int(stop_timeout.rstrip("s")) > STOP_GRACE
    (documentation,) = values_of("Documentation", PORTAL_UNIT)
    assert documentation.startswith("file:/usr/share/doc/postveil/")


def test_portal_unit_can_write_store_and_audit() -> None:
    defaults = parse_config(b"")
    writable = " ".join(values_of("ReadWritePaths", PORTAL_UNIT)).split()

    for directory in (defaults.portal.store_directory, defaults.audit.directory):
        assert any(directory.startswith(path + "/") for path in writable), directory
