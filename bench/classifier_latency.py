"""Measure what postveil-classifierd costs: time per reply, CPU per message, memory.

Starts the real daemon (shipped weights, ``classifier.workers`` 1) on a unix socket in
a temporary directory and sends it, one request at a time:

- the milter benchmarks' clean 10 KB message (bench/milter_world.py), which has no
  health word, so the milter never sends it with ``classifier.ask: health``; it shows
  the cost of a long message;
- every message of the labelled sets under tests/detection that the rules pass and
  ``ask: health`` would send.

It prints the client's wall time per reply (median and 95th percentile), the
daemon's CPU time per message, and its resident memory after start and at the end.

    .venv/bin/python bench/classifier_latency.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from milter_world import clean_message

from postveil.classifier.client import ASK_CATEGORIES, ClassifierClient
from postveil.classifier.training import labelled_sets
from postveil.config.detection import DetectionSection
from postveil.detection import Detector

SETS_DIR = Path(__file__).resolve().parent.parent / "tests" / "detection"
TICKS = os.sysconf("SC_CLK_TCK")


def start(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    path = str(directory / "classifier.sock")
    config = directory / "postveil.yaml"
    config.write_text(yaml.safe_dump({"classifier": {"enabled": True, "socket": path}}))
    process = subprocess.Popen(
        [sys.executable, "-m", "postveil.classifier.daemon", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "NOTIFY_SOCKET": ""},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return process, path
        except OSError:
            time.sleep(0.2)
        finally:
            probe.close()
    process.kill()
    raise SystemExit("postveil-classifierd did not start within 120 s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_kb(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def measure(client: ClassifierClient, pid: int, texts: list[str]) -> tuple[list[float], float]:
    times = []
    cpu_before = cpu_seconds(pid)
    for text in texts:
        started = time.perf_counter()
        client.probability(text)
        times.append((time.perf_counter() - started) * 1000)
    return times, (cpu_seconds(pid) - cpu_before) * 1000 / len(texts)


def report(label: str, words: int, times: list[float], cpu_ms: float) -> None:
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 20 else max(times)
    print(
        f"| {label} | {len(times)} | {words} | {statistics.median(times):.1f} | {p95:.1f} | {cpu_ms:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=200, help="requests for the 10 KB message (default 200)"
    )
    args = parser.parse_args()

    detector = Detector(DetectionSection())
    sent = []
    total = 0
    for name in labelled_sets(SETS_DIR):
        for path in sorted((SETS_DIR / name).glob("*.eml")):
            total += 1
            verdict, texts = detector.scan_message_texts(path.read_bytes())
            if not verdict.sensitive and not ASK_CATEGORIES.isdisjoint(verdict.categories):
                sent.append("\n".join(texts))
    long_text = (
        clean_message(10_240, "rota@clinic.test", "staff@clinic.test").decode().partition("\n\n")[2]
    )

    with tempfile.TemporaryDirectory(prefix="postveil-classifier-bench-") as directory:
        process, path = start(Path(directory))
        try:
            after_start = memory_kb(process.pid)
            client = ClassifierClient(path, timeout=30)
            print(
                f"labelled messages: {total}; passed by the rules and sent with ask: health: {len(sent)}\n"
            )
            print(
                "| messages | requests | words (median) | wall ms, median | wall ms, p95 | daemon CPU ms per message |"
            )
            print("|---|---|---|---|---|---|")
            times, cpu_ms = measure(client, process.pid, [long_text] * args.repeat)
            report("clean 10 KB message", len(long_text.split()), times, cpu_ms)
            times, cpu_ms = measure(client, process.pid, sent)
            words = int(statistics.median(len(text.split()) for text in sent))
            report("labelled messages sent with ask: health", words, times, cpu_ms)
            at_end = memory_kb(process.pid)
        finally:
            process.terminate()
            process.wait(30)
    print(
        f"\ndaemon memory: VmRSS {after_start['VmRSS']} kB after start, "
        f"{at_end['VmRSS']} kB at the end, peak VmHWM {at_end['VmHWM']} kB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
