"""Parsing a message for the portal's pages in a child process, with a time limit.

Python's email package can take seconds of CPU on a crafted message (a Content-Type
with thousands of parameters, a part of many megabytes of HTML), and a thread cannot
be stopped. Each parse therefore runs in a process of its own, which is killed when
it takes longer than ``portal.view_time_limit``. The page then offers the message as
an ``.eml`` download only.

The processes come from multiprocessing's fork server: one helper process, started
with the daemon (:meth:`Parser.start`), imports the parsing code once and forks a
child for each parse.
A child starts in about 10 ms instead of the 0.3 s a new Python interpreter needs to
import postveil (docs/benchmarks.md), and it holds none of the daemon's sockets or
threads. When the fork server has died, the next parse starts a new one.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.forkserver
import resource
import threading
import time
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import Any

from postveil.portal.reading import (
    Attachment,
    MessageView,
    cut_texts,
    download_filename,
    leaf_parts,
    parse_message,
    part_bytes,
    view_message,
)

# Imported by the fork server before it forks the first child. Python 3.11's fork
# server is never given the main script's path, so "__main__" in this list has no
# effect and each child runs the main script again. The postveil-portal script
# imports the daemon: with the daemon's modules loaded here, that run costs little.
_PRELOAD = ["postveil.portal.parsing", "postveil.portal.daemon"]


RETRY_DELAY = 0.2
"""Seconds to wait before the second attempt to start a parsing process."""

CPU_LIMIT_MARGIN = 1
"""Seconds of CPU time a parsing process may use beyond ``portal.view_time_limit``
before the kernel kills it (see :func:`_limit_cpu`)."""


MEMORY_BASE = 64 * 1024 * 1024
"""Bytes a parsing process may grow by for any message, beyond MEMORY_FACTOR times
its size (see :func:`memory_allowance`)."""

MEMORY_FACTOR = 14
"""Multiple of a message's size by which a parsing process may grow."""


class ParseTimeout(Exception):
    """The message took longer than the time limit to parse."""


class ParseFailed(Exception):
    """The parsing process failed; the message names the exception class only,
    because an exception's text may quote the message."""


class Parser:
    """Parser that runs each parse in a child process, killed after ``time_limit`` seconds."""

    def __init__(self, time_limit: float) -> None:
        self.time_limit = time_limit
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)
        self._children: set[multiprocessing.process.BaseProcess] = set()
        self._lock = threading.Lock()
        self.memory_allowance = memory_allowance
        """Function from a message's size to the bytes its parsing process may grow by."""

    def start(self) -> None:
        """Start the fork server now rather than at the first parse, which would
        otherwise take about half a second longer. Raises OSError."""
        multiprocessing.forkserver.ensure_running()

    def view(self, raw: bytes) -> MessageView:
        result = self._run("view", raw, 0)
        if result is None:
            raise ParseFailed("the parsing process returned no view")
        return MessageView(
            headers=tuple((name, value) for name, value in result["headers"]),
            texts=tuple(result["texts"]),
            attachments=tuple(Attachment(**item) for item in result["attachments"]),
            cut=result["cut"],
        )

    def part(self, raw: bytes, number: int) -> tuple[bytes, str] | None:
        """Return the content and file name of part ``number``, or None when the
        message has no such part."""
        result = self._run("part", raw, number)
        if result is None:
            return None
        return result["data"], result["filename"]

    def _run(self, task: str, raw: bytes, number: int) -> dict[str, Any] | None:
        receiver, sender = self._context.Pipe(duplex=False)
        try:
            try:
                child = self._start(sender, task, raw, number)
            finally:
                sender.close()
            with self._lock:
                self._children.add(child)
            try:
                return _receive(receiver, child, self.time_limit)
            finally:
                if child.is_alive():
                    child.kill()
                child.join()
                with self._lock:
                    self._children.discard(child)
        finally:
            receiver.close()

    def _start(
        self, sender: Connection, task: str, raw: bytes, number: int
    ) -> multiprocessing.process.BaseProcess:
        """Start a child that parses ``raw``; raises ParseFailed."""
        cpu_seconds = math.ceil(self.time_limit) + CPU_LIMIT_MARGIN
        args = (sender, task, raw, number, cpu_seconds, self.memory_allowance(len(raw)))
        try:
            return self._start_once(args)
        except (OSError, EOFError):
            # A fork server that has just died may not be reaped yet: it then still
            # counts as running, and talking to it fails. By the second attempt it is
            # reaped and a new one starts.
            time.sleep(RETRY_DELAY)
        try:
            return self._start_once(args)
        except (OSError, EOFError) as exc:
            raise ParseFailed(f"cannot start the parsing process: {exc!r}") from None

    def _start_once(self, args: tuple[Any, ...]) -> multiprocessing.process.BaseProcess:
        child = self._context.Process(target=_child, args=args, name="postveil-portal-parse")
        child.start()
        return child

    def close(self) -> None:
        """Kill parsing processes that are still running (at shutdown)."""
        with self._lock:
            children = list(self._children)
        for child in children:
            if child.is_alive():
                child.kill()


def _receive(
    receiver: Connection, child: multiprocessing.process.BaseProcess, time_limit: float
) -> dict[str, Any] | None:
    if not receiver.poll(time_limit):
        raise ParseTimeout(f"parsing took longer than {time_limit:g}s")
    try:
        status, result = receiver.recv()
    except EOFError:
        # The child ended without a result: killed (out of memory, for one) or crashed.
        child.join(1)
        raise ParseFailed(f"the parsing process ended with status {child.exitcode}") from None
    if status != "ok":
        raise ParseFailed(result)
    value: dict[str, Any] | None = result
    return value


def _limit_cpu(seconds: int) -> None:
    """Have the kernel kill this process after ``seconds`` of CPU time, and never
    write a core file, which would hold the decrypted message.

    The daemon kills a child that outlives the time limit, but it learns the child's
    state through the fork server. When the fork server dies during a parse, the child
    looks ended to the daemon and goes on parsing, and so it does when the daemon
    itself is killed. This limit ends it in both cases. Soft and hard limit are equal,
    so Linux sends SIGKILL, not SIGXCPU, whose default action dumps core.
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))


def _limit_memory(allowance: int) -> None:
    """Let this process's address space grow by at most ``allowance`` bytes beyond
    its present size, so a parse that needs more raises MemoryError instead of
    taking the host's memory. The present size includes the message received."""
    with open("/proc/self/statm", "rb") as statm:
        pages = int(statm.read().split()[0])
    limit = pages * resource.getpagesize() + allowance
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def memory_allowance(size: int) -> int:
    """Return the bytes by which a parsing process may grow for a message of ``size``
    bytes: MEMORY_BASE plus MEMORY_FACTOR times the size (see docs/benchmarks.md)."""
    return MEMORY_BASE + MEMORY_FACTOR * size


def parse_task(task: str, raw: bytes, number: int) -> object:
    """Return the result of ``task`` ("view" or "part") for ``raw``, as the child
    sends it."""
    message = parse_message(raw)
    if task == "view":
        # Cut here, so the long text is neither sent through the pipe nor rendered.
        return asdict(cut_texts(view_message(message)))
    parts = leaf_parts(message)
    if number >= len(parts):
        return None
    part = parts[number]
    return {"data": part_bytes(part), "filename": download_filename(part, number)}


def _child(
    sender: Connection, task: str, raw: bytes, number: int, cpu_seconds: int, allowance: int
) -> None:
    """Parse ``raw`` in the child process and send ("ok", result) or ("error", class name).

    A parse over its memory limit sends ("error", "MemoryError"). When even that reply
    cannot be built, the child ends without one. The daemon raises ParseFailed for both.
    """
    _limit_cpu(cpu_seconds)
    try:
        _limit_memory(allowance)
        result = parse_task(task, raw, number)
        del raw
        sender.send(("ok", result))
    except Exception as exc:  # noqa: BLE001 - reported by class; the text may quote the message
        sender.send(("error", type(exc).__name__))
    finally:
        sender.close()
