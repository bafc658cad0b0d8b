"""The daemons' standard-error log handler writes whole lines without a lock."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from postveil.config.logging import LoggingSection
from postveil.log import LineHandler, setup_logging

THREADS = 8
LINES = 500


def test_line_handler_format() -> None:
    read_end, write_end = os.pipe()
    handler = LineHandler(write_end)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.Logger("postveil.test")
    logger.addHandler(handler)

    logger.info("queue id %s: %d recipient(s), caf\u00e9", "4Fxq2k", 2)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.read() == "INFO postveil.test: queue id 4Fxq2k: 2 recipient(s), caf\u00e9\n".encode()


def test_line_handler_keeps_lines_whole_across_threads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handler = LineHandler(fd)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.Logger("postveil.test")
    logger.addHandler(handler)

    def work(number: int) -> None:
        for line in range(LINES):
            logger.info("thread %d line %d %s", number, line, "x" * 200)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.close(fd)

    lines = path.read_text().splitlines()
    assert len(lines) == THREADS * LINES
    expected = {f"thread {n} line {i} {'x' * 200}" for n in range(THREADS) for i in range(LINES)}
    assert set(lines) == expected


def test_line_handler_applies_filters() -> None:
    read_end, write_end = os.pipe()
    handler = LineHandler(write_end)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: record.levelno >= logging.WARNING)
    logger = logging.Logger("postveil.test")
    logger.addHandler(handler)

    logger.info("dropped")
    logger.warning("kept")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.read() == b"kept\n"


def test_reload_while_threads_log(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """setup_logging replaces the root handler while threads log: no line is lost
    or cut. A record logged during the swap may be written by both handlers."""
    path = tmp_path / "stderr"
    stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed at the end
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    section = LoggingSection(level="INFO")
    try:
        setup_logging(section, "test")
        logger = logging.getLogger("postveil.reload")

        def work(number: int) -> None:
            for line in range(LINES):
                logger.info("thread %d line %d", number, line)

        threads = [threading.Thread(target=work, args=(number,)) for number in range(THREADS)]
        for thread in threads:
            thread.start()
        reloads = 0
        while any(thread.is_alive() for thread in threads):
            setup_logging(section, "test", previous=section)
            reloads += 1
        for thread in threads:
            thread.join(10)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        stream.close()

    lines = path.read_text().splitlines()
    expected = {f"INFO postveil.reload: thread {n} line {i}" for n in range(THREADS) for i in range(LINES)}
    assert reloads > 0
    assert set(lines) == expected


def test_line_handler_waits_on_full_nonblocking_pipe() -> None:
    """Standard error may be a pipe that another process set to O_NONBLOCK. A line
    longer than the free space must still arrive whole, followed by the next one."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    handler = LineHandler(write_end)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.Logger("postveil.test")
    logger.addHandler(handler)
    long_text = "y" * 200_000
    received = bytearray()

    def drain() -> None:
        time.sleep(0.2)
        with os.fdopen(read_end, "rb") as reader:
            received.extend(reader.read())

    reader_thread = threading.Thread(target=drain)
    reader_thread.start()
    logger.warning(long_text)
    logger.warning("next")
    os.close(write_end)
    reader_thread.join(10)

    assert bytes(received) == f"{long_text}\nnext\n".encode()
