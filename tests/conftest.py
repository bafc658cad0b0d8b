"""Session-wide test set-up shared by every area."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from postveil.harness.world import World
from tests import planted

pytest_plugins = ["postveil.harness.pytest_plugin"]

LAST_MODULE = "test_zz_no_phi_leak.py"


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # The planted-value scan must see the files every other test wrote, so it runs last.
    last = [item for item in items if item.path.name == LAST_MODULE]
    items[:] = [item for item in items if item.path.name != LAST_MODULE] + last


@pytest.fixture(scope="session", autouse=True)
def session_log_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Write every log record of the session under the base temp dir, where the scan reads it."""
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    handler = planted.capture_session_logs(tmp_path_factory.getbasetemp() / "session-logs")
    yield
    root.removeHandler(handler)
    handler.close()
    root.setLevel(previous_level)


@pytest.fixture(scope="session")
def world(world: World) -> World:
    """The harness world, with its directory (maillog, daemon logs) added to the final scan."""
    planted.register_scan_dir(world.base_dir)
    return world
