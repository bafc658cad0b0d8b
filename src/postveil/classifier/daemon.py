"""``postveil-classifierd``: the classifier's probabilities on a unix socket.

It loads the embedding model and the weights once, then replies to each request (see
:mod:`postveil.classifier.protocol`) from a pool of ``classifier.
workers`` threads. It logs how many words it read and how long it took, never the text.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import logging
import os
import signal
import socket
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import sdnotify

from postveil import __version__
from postveil.classifier.model import ClassifierError, Embedder, Weights, load_weights
from postveil.classifier.protocol import FRAME_HEADER, MAX_FRAME, decode_frame_body, encode_frame
from postveil.config import CONFIG_ENV, DEFAULT_CONFIG_PATH
from postveil.config.classifier import ClassifierSection
from postveil.startup import EX_CONFIG, load_daemon_config, parse_daemon_args, start_logging

PROGRAM = "postveil-classifierd"
log = logging.getLogger("postveil.classifier")

IDLE_TIMEOUT = 60.0
"""Seconds a connection may wait between requests before the daemon closes it."""
REQUEST_TIMEOUT = 10.0
"""Seconds a client has to send the rest of a request once its length arrived."""
STOP_GRACE = 10.0
"""Seconds a stop waits for the replies to requests already received. The systemd
unit's TimeoutStopSec (15 s) is longer."""


class Scorer:
    """The embedding model and the weights: text in, probability out."""

    def __init__(self, weights: Weights, embedder: Embedder) -> None:
        self.weights = weights
        self._embedder = embedder

    def probability(self, text: str) -> float:
        vector = self._embedder.vectors([text], self.weights.piece_words, self.weights.max_words)[0]
        return self.weights.probability(vector)


class ClassifierDaemon:
    def __init__(self, section: ClassifierSection, scorer: Scorer) -> None:
        self.section = section
        self.scorer = scorer
        self._executor = ThreadPoolExecutor(
            max_workers=section.workers, thread_name_prefix="classify"
        )
        self._stop = asyncio.Event()
        self._stop_signal: str | None = None
        # Connection handlers, and those of them waiting for a request rather than
        # working on one: a stop cancels the waiting ones and lets the others finish.
        self._connections: set[asyncio.Task[None]] = set()
        self._waiting: set[asyncio.Task[None]] = set()
        self._workers = asyncio.Semaphore(section.workers)

    def request_stop(self, signum: int) -> None:
        if self._stop_signal is None:
            self._stop_signal = signal.Signals(signum).name
            log.info("received %s: stopping", self._stop_signal)
        self._stop.set()

    async def run(self, listener: socket.socket) -> int:
        server = await asyncio.start_unix_server(self._serve, sock=listener)
        log.info(
            "%s %s ready on %s (%d worker(s))",
            PROGRAM,
            __version__,
            self.section.socket,
            self.section.workers,
        )
        sdnotify.SystemdNotifier().notify("READY=1")
        await self._stop.wait()
        server.close()
        await self._finish_requests()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.section.socket)
        log.info("stopped")
        return 0

    async def _finish_requests(self) -> None:
        """Close idle connections and give requests already received STOP_GRACE
        seconds to get their replies."""
        for task in self._waiting:
            task.cancel()
        if not self._connections:
            return
        _, pending = await asyncio.wait(self._connections, timeout=STOP_GRACE)
        if pending:
            log.warning(
                "%d request(s) still in progress after %g s: closing their connections",
                len(pending),
                STOP_GRACE,
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while not self._stop.is_set():
                self._waiting.add(task)
                try:
                    header = await asyncio.wait_for(
                        reader.readexactly(FRAME_HEADER.size), IDLE_TIMEOUT
                    )
                except (asyncio.IncompleteReadError, TimeoutError, asyncio.CancelledError):
                    return
                finally:
                    self._waiting.discard(task)
                (length,) = FRAME_HEADER.unpack(header)
                if length > MAX_FRAME:
                    log.warning(
                        "rejected a request of %d bytes (the maximum is %d)", length, MAX_FRAME
                    )
                    await self._reply(
                        writer, {"error": f"request of {length} bytes exceeds {MAX_FRAME}"}
                    )
                    return
                try:
                    body = await asyncio.wait_for(reader.readexactly(length), REQUEST_TIMEOUT)
                except (asyncio.IncompleteReadError, TimeoutError):
                    log.warning("a client sent an incomplete request")
                    return
                reply = await self._score_request(body, reader)
                if reply is None:
                    return
                await self._reply(writer, reply)
        except ConnectionError:
            return
        except asyncio.CancelledError:
            # A stop closes this connection after STOP_GRACE; the handler ends here,
            # because asyncio would log a cancelled handler as an error.
            if not self._stop.is_set():
                raise
            return
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _score_request(
        self, body: bytes, reader: asyncio.StreamReader
    ) -> dict[str, object] | None:
        """Return the reply to one request, or None when its client left while it
        waited for a worker."""
        try:
            text = decode_frame_body(body)["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("malformed request: %s", type(exc).__name__)
            return {"error": f'malformed request: expected {{"text": ...}} ({type(exc).__name__})'}
        async with self._workers:
            # Requests wait here, not in the executor's queue, so one whose client gave
            # up (its budget ran out, so it closed the connection) costs no model time.
            if reader.at_eof():
                log.debug("skipped a request whose client closed the connection")
                return None
            started = time.monotonic()
            try:
                loop = asyncio.get_running_loop()
                probability = await loop.run_in_executor(
                    self._executor, self.scorer.probability, text
                )
            except Exception as exc:  # noqa: BLE001 - the client gets the error and defers the message
                log.error("scoring failed: %s", type(exc).__name__)
                return {"error": f"scoring failed: {type(exc).__name__}"}
        log.debug(
            "scored %d words in %.0f ms: probability %.3f",
            len(text.split()),
            (time.monotonic() - started) * 1000,
            probability,
        )
        return {"probability": probability, "threshold": self.scorer.weights.threshold}

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, payload: dict[str, object]) -> None:
        writer.write(encode_frame(payload))
        await writer.drain()


def check_listener(section: ClassifierSection) -> int | None:
    """Check that the socket can be opened, removing a stale one, and return the
    socket group's id; raises ClassifierError. The daemon runs it before it spends
    seconds loading the model."""
    parent = os.path.dirname(section.socket)
    if not os.path.isdir(parent):
        raise ClassifierError(
            f"directory {parent} of classifier.socket does not exist (the systemd unit creates "
            "/run/postveil-classifier with RuntimeDirectory=)"
        )
    _remove_stale_socket(section.socket)
    return _socket_group_id(section)


def open_listener(section: ClassifierSection) -> socket.socket:
    """Bind the unix socket, replacing a stale one; raises ClassifierError."""
    path = section.socket
    group_id = check_listener(section)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, int(section.socket_mode, 8))
        if group_id is not None:
            os.chown(path, -1, group_id)
        listener.listen(64)
    except OSError as exc:
        listener.close()
        raise ClassifierError(
            f"cannot listen on {path} (classifier.socket): {exc.strerror or exc}"
        ) from exc
    listener.setblocking(False)
    return listener


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file that no process listens on; raise ClassifierError for a file
    of another type or a socket in use."""
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(existing.st_mode):
        raise ClassifierError(f"{path} (classifier.socket) exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        # Left by a daemon that did not stop cleanly.
        os.unlink(path)
        log.info("removed the stale socket %s", path)
        return
    finally:
        probe.close()
    raise ClassifierError(f"{path} (classifier.socket) is in use by another process")


def _socket_group_id(section: ClassifierSection) -> int | None:
    if section.socket_group is None:
        return None
    try:
        return grp.getgrnam(section.socket_group).gr_gid
    except KeyError:
        raise ClassifierError(
            f"group {section.socket_group!r} (classifier.socket_group) does not exist on this host"
        ) from None


def load_scorer(section: ClassifierSection) -> Scorer:
    """Load the weights and the model and score one text, so the first request is not slow."""
    weights = load_weights(section.weights)
    started = time.monotonic()
    scorer = Scorer(weights, Embedder())
    scorer.probability("warm-up")
    log.info(
        "loaded the embedding model and weights %s (threshold %.3f) in %.1f s",
        section.weights or "shipped with postveil",
        weights.threshold,
        time.monotonic() - started,
    )
    return scorer


_EPILOG = f"""configuration:
  --config defaults to ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH}. The daemon reads the
  classifier section; it starts whether or not classifier.enabled is set, so that it
  can be running before the milter's configuration enables it.

signals:
  TERM, INT  stop: finish the requests in progress, remove the socket and exit 0
  HUP        ignored with a log line; restart the daemon to apply a new configuration

exit status:
  0   stopped by a signal
  78  invalid configuration, weights or model that cannot be loaded, or a socket that
      cannot be opened (EX_CONFIG; the systemd unit does not restart on it)
  1   any other failure
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_daemon_args(
        PROGRAM,
        "Score messages for postveil-milter with a sentence-embedding model.",
        _EPILOG,
        argv,
    )


async def serve(section: ClassifierSection, scorer: Scorer, listener: socket.socket) -> int:
    daemon = ClassifierDaemon(section, scorer)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop, signum)
    loop.add_signal_handler(
        signal.SIGHUP,
        log.warning,
        "SIGHUP: %s does not reload; restart it to apply changes",
        PROGRAM,
    )
    return await daemon.run(listener)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_daemon_config(PROGRAM, args.config)
    if config is None or not start_logging(PROGRAM, config):
        return EX_CONFIG
    section = config.classifier
    # Loading the model takes seconds, and a SIGHUP in that time must not end the
    # daemon (its default action), because systemd would not restart it.
    signal.signal(
        signal.SIGHUP,
        lambda signum, frame: log.warning(
            "SIGHUP: %s does not reload; restart it to apply changes", PROGRAM
        ),
    )
    log.info("starting with configuration %s (version %s)", config.source, config.version)
    try:
        check_listener(section)
        scorer = load_scorer(section)
        listener = open_listener(section)
    except ClassifierError as exc:
        log.critical("cannot start: %s", exc)
        return EX_CONFIG
    return asyncio.run(serve(section, scorer, listener))


if __name__ == "__main__":
    sys.exit(main())
