"""The parsing processes behind the portal's pages, without the web server."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from postveil.portal.parsing import ParseFailed, Parser, ParseTimeout
from postveil.portal.reading import MAX_PAGE_TEXT
from tests.portal.conftest import ATTACHMENT, sample_message
from tests.portal.test_web_flow import _nested_multipart


def _forkserver_pids() -> list[int]:
    """Children of this process that run multiprocessing's fork server."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = next(line for line in status.splitlines() if line.startswith("PPid:"))
        if int(parent.split()[1]) == os.getpid() and b"forkserver" in command:
            found.append(int(entry.name))
    return found


def test_view_and_part() -> None:
    parser = Parser(10)
    raw = sample_message()
    view = parser.view(raw)
    assert view.attachments
    number = view.attachments[0].number
    found = parser.part(raw, number)
    assert found is not None
    assert found[0] == ATTACHMENT
    assert parser.part(raw, 99) is None


def test_failure_names_the_exception_class_only() -> None:
    with pytest.raises(ParseFailed) as raised:
        Parser(10).view(_nested_multipart(1500))
    assert str(raised.value) == "RecursionError"


def test_memory_limit_reports_memory_error() -> None:
    parser = Parser(10)
    parser.memory_allowance = lambda size: 1 << 20
    text = sample_message(html="<p>" + "x " * 2_000_000 + "</p>")
    with pytest.raises(ParseFailed, match="MemoryError"):
        parser.view(text)


def test_default_memory_limit_fits_large_text() -> None:
    # 8 MB of text, cut to MAX_PAGE_TEXT characters for the page.
    raw = sample_message(html="<p>" + "word " * 1_600_000 + "</p>")
    view = Parser(10).view(raw)
    assert view.cut
    assert sum(len(text) for text in view.texts) == MAX_PAGE_TEXT


def test_time_limit() -> None:
    slow = sample_message(html="<p>" + "<b>x</b> " * 800_000 + "</p>")
    started = time.monotonic()
    with pytest.raises(ParseTimeout):
        Parser(0.5).view(slow)
    assert time.monotonic() - started < 5


def test_new_fork_server_after_it_died() -> None:
    parser = Parser(10)
    parser.start()
    pids = _forkserver_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # Reaped by the next parse, which starts a new fork server.
    assert parser.view(sample_message()).texts
    new_pids = _forkserver_pids()
    assert new_pids
    assert set(new_pids).isdisjoint(pids)


def _slow_content_type(parameters: int) -> bytes:
    """A message whose Content-Type has ``parameters`` parameters: Python 3.11's email
    package takes more than a minute for 40,000 of them."""
    listed = "".join(f'; p{i}="v{i}"' for i in range(parameters))
    return f"Subject: s\r\nContent-Type: text/plain{listed}\r\n\r\nhello\r\n".encode()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_time_limit_without_fork_server() -> None:
    parser = Parser(1)
    parser.start()
    children: list[int] = []
    killer_done = threading.Event()

    def kill_fork_server() -> None:
        # Wait for the parsing process, then kill the fork server under it, which
        # takes with it the only way the daemon learns the child's status.
        deadline = time.monotonic() + 10
        while not parser._children and time.monotonic() < deadline:
            time.sleep(0.01)
        children.extend(child.pid for child in list(parser._children) if child.pid)
        for pid in _forkserver_pids():
            os.kill(pid, signal.SIGKILL)
        killer_done.set()

    killer = threading.Thread(target=kill_fork_server)
    killer.start()
    with pytest.raises((ParseTimeout, ParseFailed)):
        parser.view(_slow_content_type(40_000))
    killer.join()
    assert killer_done.is_set()
    assert children

    # The child ends soon after the time limit although the daemon lost track of it.
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in children if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
