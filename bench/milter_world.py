"""Shared set-up of the end-to-end milter benchmarks (not a benchmark by itself).

Builds a harness :class:`~postveil.harness.world.World` with the private Postfix, one
destination domain whose MX is Postfix's own ``smtp-sink`` on a loopback address
(port 25, found through the DNS fixture), and postveil-milter processes on a unix and
an inet socket. Everything listens on 127.0.0.0/8 only.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from postveil.harness.daemons import DaemonProcess
from postveil.harness.net import allocate_address, free_port, port_open
from postveil.harness.postfix import PrivatePostfix
from postveil.harness.world import World
from postveil.milter.daemon import READY_MESSAGE

QUEUE_SUBDIRECTORIES = ("maildrop", "incoming", "active", "deferred", "hold")
_SENT_RE = re.compile(r"status=sent")
_DEFERRED_RE = re.compile(r"status=(deferred|bounced)")


class BenchError(RuntimeError):
    """A benchmark run failed or did not finish within its time limit."""


class SmtpSinkProcess:
    """Postfix's ``smtp-sink`` listening on ``address:25`` as a destination MX host."""

    def __init__(self, address: str, port: int = 25) -> None:
        self.address = address
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SmtpSinkProcess:
        # smtp-sink refuses to run as root without -u; 1024 is the listen backlog.
        self.process = subprocess.Popen(
            ["smtp-sink", "-u", "postfix", f"{self.address}:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not port_open(self.address, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"smtp-sink did not start on {self.address}:{self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def system_cpu_seconds() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine so far (from /proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    total = sum(fields[:8])  # guest time is already counted in user and nice
    ticks = os.sysconf("SC_CLK_TCK")
    return (total - idle) / ticks, total / ticks


class ScriptProcess(DaemonProcess):
    """A process started from a full command line instead of a daemon module."""

    def __init__(self, command: list[str], log_path: Path, ready: Any) -> None:
        super().__init__("", Path(os.devnull), log_path, ready)
        self.command = command

    def start(self, timeout: float = 20.0) -> ScriptProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise BenchError(f"{self.command[1]} did not start:\n{self.log_text()[-2000:]}")
            time.sleep(0.05)
        return self


@dataclass
class MilterProcess:
    """A milter subprocess and the ``smtpd_milters`` value that reaches it."""

    daemon: DaemonProcess
    smtpd_milters: str

    @property
    def pid(self) -> int:
        assert self.daemon.process is not None
        return self.daemon.process.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process so far (from /proc/PID/stat)."""
        user, system = self.cpu_split()
        return user + system

    def cpu_split(self) -> tuple[float, float]:
        """User and system CPU seconds of the process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / ticks, int(fields[12]) / ticks

    def open_files(self) -> int:
        """Number of open file descriptors of the process."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def status_kib(self, key: str) -> int:
        """Return a ``kB`` field of /proc/PID/status, for example ``VmHWM`` or ``VmRSS``."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise BenchError(f"{key} not found in /proc/{self.pid}/status")


class BenchWorld:
    """The World, private Postfix, smtp-sink MX and milter processes of one benchmark."""

    def __init__(self, domain: str = "bench-dest.test") -> None:
        self.world = World().start()
        self.domain = domain
        self.sink = SmtpSinkProcess(allocate_address()).start()
        mx_host = f"mx.{domain}"
        self.world.dns.add(domain, "MX", f"10 {mx_host}.")
        self.world.dns.add(mx_host, "A", self.sink.address)
        self.postfix: PrivatePostfix = self.world.start_postfix()
        self.milters: dict[str, MilterProcess] = {}
        self._maillog_offset = 0

    def close(self) -> None:
        for milter in self.milters.values():
            milter.daemon.terminate()
        self.sink.stop()
        self.world.stop()

    def __enter__(self) -> BenchWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- milters -----------------------------------------------------------------

    def milter_config(self, socket_spec: str, *, fsync: str, log_level: str) -> dict[str, Any]:
        config = self.world.base_config()
        config["milter"]["socket"] = socket_spec
        config["audit"]["fsync"] = fsync
        config["logging"] = {"level": log_level}
        return config

    def _socket_for(self, kind: str) -> tuple[str, str, Any]:
        """Return the libmilter socket, the ``smtpd_milters`` value and a readiness check."""
        if kind == "unix":
            path = self.world.run_dir / f"milter-{len(self.milters)}.sock"
            spec = f"unix:{path}"

            def ready() -> bool:
                return path.exists()

            smtpd_milters = spec
        elif kind == "inet":
            port = free_port()
            spec = f"inet:{port}@127.0.0.1"

            def ready() -> bool:
                return port_open("127.0.0.1", port)

            smtpd_milters = f"inet:127.0.0.1:{port}"
        else:
            raise ValueError(f"unknown milter socket kind {kind!r}: expected unix or inet")
        return spec, smtpd_milters, ready

    def start_milter(self, kind: str, *, fsync: str = "always", log_level: str = "INFO", extra: dict[str, Any] | None = None) -> MilterProcess:
        """Start postveil-milter on a unix socket (``kind="unix"``) or inet loopback (``"inet"``)."""
        spec, smtpd_milters, ready = self._socket_for(kind)
        config = self.milter_config(spec, fsync=fsync, log_level=log_level)
        for section, values in (extra or {}).items():
            config.setdefault(section, {}).update(values)
        name = f"{kind}-{len(self.milters)}"
        path = self.world.base_dir / f"milter-{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        daemon = DaemonProcess(
            "postveil.milter.daemon", path, self.world.log_dir / f"milter-{name}.log", ready=ready
        ).start()
        # The socket exists before the daemon has set its mode and group.
        daemon.wait_for_log(READY_MESSAGE)
        milter = MilterProcess(daemon, smtpd_milters)
        self.milters[name] = milter
        return milter

    def start_trivial_milter(self, kind: str, callbacks: str) -> MilterProcess:
        """Start bench/trivial_milter.py, which accepts everything, as a baseline."""
        spec, smtpd_milters, ready = self._socket_for(kind)
        name = f"trivial-{callbacks}-{kind}-{len(self.milters)}"
        script = Path(__file__).with_name("trivial_milter.py")
        daemon = ScriptProcess(
            [sys.executable, str(script), "--socket", spec, "--callbacks", callbacks],
            self.world.log_dir / f"milter-{name}.log",
            ready,
        ).start()
        milter = MilterProcess(daemon, smtpd_milters)
        self.milters[name] = milter
        return milter

    def attach(self, milter: MilterProcess | None) -> None:
        """Point Postfix's smtpd at ``milter`` (None: no milter) and let the reload settle."""
        self.postfix.configure(smtpd_milters=milter.smtpd_milters if milter else "")
        # smtpd processes from before the reload finish their session and exit.
        time.sleep(1.5)

    # -- queue and maillog -------------------------------------------------------

    def queue_file_count(self) -> int:
        count = 0
        for name in QUEUE_SUBDIRECTORIES:
            for _root, _dirs, files in os.walk(self.postfix.queue_dir / name):
                count += len(files)
        return count

    def mark_maillog(self) -> None:
        self._maillog_offset = self.postfix.maillog.stat().st_size

    def maillog_since_mark(self) -> str:
        with self.postfix.maillog.open("rb") as handle:
            handle.seek(self._maillog_offset)
            return handle.read().decode(errors="replace")

    def wait_delivered(self, deliveries: int, timeout: float) -> tuple[float, int]:
        """Wait until the maillog shows ``deliveries`` ``status=sent`` lines since the mark.

        Returns the monotonic time when that was first seen and the number of deferred or
        bounced lines. Raises BenchError on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.maillog_since_mark()
            sent = len(_SENT_RE.findall(text))
            failed = len(_DEFERRED_RE.findall(text))
            if sent >= deliveries:
                return time.monotonic(), failed
            if time.monotonic() > deadline:
                raise BenchError(
                    f"only {sent} of {deliveries} deliveries within {timeout:.0f}s "
                    f"({failed} deferred or bounced); see {self.postfix.maillog}"
                )
            time.sleep(0.02)

    def wait_queue_empty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.queue_file_count():
            if time.monotonic() > deadline:
                raise BenchError(f"queue not empty after {timeout:.0f}s")
            time.sleep(0.1)


def smtp_source(
    port: int, *, messages: int, sessions: int, message_file: Path, sender: str, recipient: str, recipients: int = 1, timeout: float
) -> float:
    """Run Postfix's ``smtp-source`` against 127.0.0.1:``port``; return the elapsed seconds.

    Raises BenchError when smtp-source reports an error (a rejected or deferred message
    ends it) or exceeds ``timeout``.
    """
    command = [
        "smtp-source",
        "-s", str(sessions),
        "-m", str(messages),
        "-f", sender,
        "-t", recipient,
        "-r", str(recipients),
        "-F", str(message_file),
        f"127.0.0.1:{port}",
    ]
    started = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"smtp-source did not finish within {timeout:.0f}s") from exc
    elapsed = time.monotonic() - started
    if result.returncode != 0 or "fatal" in result.stderr or "error" in result.stderr.lower():
        raise BenchError(f"smtp-source failed (exit {result.returncode}): {result.stderr.strip()[:500]}")
    return elapsed


def clean_message(size: int, sender: str, recipient: str, subject: str = "Rota for next week") -> bytes:
    """A plain-text message of about ``size`` bytes with no identifiers or health terms."""
    header = (
        f"From: <{sender}>\n"
        f"To: <{recipient}>\n"
        f"Subject: {subject}\n"
        "Message-ID: <bench-clean@clinic.test>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
    )
    sentences = (
        "The team meeting moves to the small room on the second floor this week.",
        "Please bring the printed agenda and your notes from the last session.",
        "Coffee and biscuits will be provided by the kitchen staff as usual.",
        "The car park behind the building is closed for repairs until Friday.",
        "Remember to switch off the lights and lock the side door when you leave.",
    )
    lines: list[str] = []
    length = len(header)
    index = 0
    while length < size:
        line = sentences[index % len(sentences)]
        lines.append(line)
        length += len(line) + 2
        index += 1
    return (header + "\n".join(lines) + "\n").encode()


def machine_summary() -> str:
    """CPU model, core count, kernel and Python version, for the results page."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    postfix = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{model}, {os.cpu_count()} CPUs, kernel {platform.release()}, Python {platform.python_version()}, "
        f"Postfix {postfix or 'unknown'}, load average {os.getloadavg()[0]:.2f} at start"
    )


def require_tools() -> None:
    for tool in ("smtp-source", "smtp-sink", "postfix", "unshare"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed (it comes with the postfix package)")
    if os.geteuid() != 0:
        raise BenchError("the private Postfix needs root")
