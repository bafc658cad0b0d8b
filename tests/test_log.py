"""The daemons' standard-error log handler writes whole lines without a lock."""

from __future__ import annotations

import logging
import os
import threading

from postveil.log import LineHandler

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
