"""Run postveil's daemons as real subprocesses for tests and the demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class DaemonProcess:
    """One daemon started from its console script module, logging to a file."""

    def __init__(
        self,
        module: str,
        config_path: Path,
        log_path: Path,
        ready: Callable[[], bool],
        extra_args: list[str] | None = None,
        *,
        interpreter: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        group: str | None = None,
    ) -> None:
        """Describe the daemon; nothing runs until :meth:`start`.

        ``interpreter`` is the Python command with its options (default: this
        interpreter). ``env`` replaces this process's environment, and ``user`` and
        ``group`` run the daemon as that user, with no supplementary groups and in /.
        """
        self.module = module
        self.config_path = Path(config_path)
        self.log_path = Path(log_path)
        self.ready = ready
        self.extra_args = extra_args or []
        self.interpreter = interpreter or [sys.executable]
        self.env = dict(env) if env is not None else None
        self.user = user
        self.group = group
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        """Size of the log file when the current process started; log_text() reads from here."""

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.seek(0, os.SEEK_END)
        self._log_offset = log.tell()
        env = dict(os.environ if self.env is None else self.env, PYTHONUNBUFFERED="1")
        account: dict[str, Any] = {}
        if self.user is not None:
            account = {"user": self.user, "group": self.group, "extra_groups": [], "cwd": "/"}
        self.process = subprocess.Popen(
            [
                *self.interpreter,
                "-m",
                self.module,
                "--config",
                str(self.config_path),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            **account,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.module} exited with {self.process.returncode} during start-up:\n"
                    + self.log_text()[-3000:]
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(
                    f"{self.module} not ready within {timeout:.0f}s:\n" + self.log_text()[-3000:]
                )
            time.sleep(0.05)
        return self

    def terminate(self, timeout: float = 15.0) -> int | None:
        """Send SIGTERM and wait; return the exit status (None if it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the last start, None before the first."""
        return self.process.pid if self.process is not None else None

    def poll(self) -> int | None:
        """Reap the process if it has exited and return its exit status; None while it runs.

        A process that exits stays a zombie until its parent waits for it, so a
        long-running parent calls this now and then.
        """
        return self.process.poll() if self.process is not None else None

    def log_text(self) -> str:
        """Return what the process started last wrote to its log file."""
        return self._read_log(self._log_offset)

    def full_log_text(self) -> str:
        """Return the whole log file, earlier starts included."""
        return self._read_log(0)

    def _read_log(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        """Wait until ``text`` appears in log_text(); raise if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.module} exited with {self.process.returncode} before logging {text!r}:\n"
                    + self.log_text()[-3000:]
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.module} did not log {text!r} within {timeout:.0f}s:\n"
                    + self.log_text()[-3000:]
                )
            time.sleep(0.05)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()
