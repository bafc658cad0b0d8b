"""pytest fixtures over the harness, shared by every test module.

Enable with ``pytest_plugins = ["postveil.harness.pytest_plugin"]`` in conftest.py.
The world (DNS, HTTPS, test CA) starts once per session. The private Postfix starts
on first use and is shared, so a test that changes its main.cf restores it through
:func:`postfix_settings`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from postveil.harness.daemons import DaemonProcess
from postveil.harness.postfix import PrivatePostfix
from postveil.harness.world import KEEP_ENV, World, keep_requested
from postveil.milter.daemon import READY_MESSAGE

_domain_numbers = itertools.count(1)
_KEPT_DIRECTORY = pytest.StashKey[Path]()


def postfix_available() -> str | None:
    """Return why the private Postfix cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the private Postfix needs root"
    for tool in ("postfix", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run scripts/bootstrap.sh)"
    return None


def unique_domain(label: str) -> str:
    """Return an invented domain name that no other test in this session uses."""
    return f"{label}-{next(_domain_numbers)}.test"


@pytest.fixture(scope="session")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """Yield the session's world, whose directory is removed at the end unless $POSTVEIL_KEEP_HARNESS is set."""
    with World(keep=keep_requested()) as instance:
        yield instance
    if instance.keep:
        request.config.stash[_KEPT_DIRECTORY] = instance.base_dir


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    # Output of a fixture's teardown is captured, so the kept directory is named here.
    kept = config.stash.get(_KEPT_DIRECTORY, None)
    if kept is not None:
        terminalreporter.write_line(f"postveil harness: kept {kept} (${KEEP_ENV} is set)")


@pytest.fixture(scope="session")
def postfix(world: World) -> PrivatePostfix:
    reason = postfix_available()
    if reason is not None:
        pytest.fail(f"private Postfix unavailable: {reason}")
    if world.postfix is None:
        world.start_postfix()
    assert world.postfix is not None
    return world.postfix


@pytest.fixture
def milter(world: World, postfix: PrivatePostfix) -> Iterator[DaemonProcess]:
    """postveil-milter with the world's base configuration, attached to Postfix."""
    with attached_milter(world, postfix) as daemon:
        yield daemon


@contextlib.contextmanager
def attached_milter(
    world: World, postfix: PrivatePostfix, config_path: Path | None = None
) -> Iterator[DaemonProcess]:
    """Run postveil-milter attached to Postfix for a ``with`` block.

    The block starts once the milter's socket has its final mode and group (the
    daemon logs READY_MESSAGE then). On exit the milter is stopped and Postfix's
    smtpd_milters is restored, so later tests do not meet a dead milter.
    """
    milters_before = postfix.main_cf().get("smtpd_milters")
    daemon: DaemonProcess | None = None
    try:
        daemon = world.start_milter(config_path)
        daemon.wait_for_log(READY_MESSAGE)
        yield daemon
    finally:
        if daemon is not None:
            daemon.terminate()
        world.daemons.pop("milter", None)
        postfix.configure(smtpd_milters=milters_before)


@contextlib.contextmanager
def postfix_settings(postfix: PrivatePostfix, **settings: str) -> Iterator[PrivatePostfix]:
    """Apply main.cf settings for the duration of a ``with`` block, then restore them."""
    before = postfix.main_cf()
    postfix.configure(**settings)
    try:
        yield postfix
    finally:
        restore = {key: before.get(key) for key in settings}
        postfix.configure(**restore)
