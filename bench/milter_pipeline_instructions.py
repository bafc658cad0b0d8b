"""Instructions per clean 10 KB message of a milter inside the Postfix pipeline.

Starts the harness's private Postfix and smtp-sink (as bench/milter_throughput.py
does) and a milter under valgrind's callgrind: postveil-milter on a unix socket, or
bench/trivial_milter.py with postveil's unix-socket steps as the baseline of libmilter
and pymilter alone. smtp-source sends warm-up messages, the counters are zeroed, and
then ``--messages`` more messages go through one SMTP session. The instructions the
milter process executed for them, divided by the messages, are comparable with
``bench/milter_session_cpu.py --sessions-only`` under callgrind, which runs the same
callbacks without Postfix. Run time is about a minute per 100 messages.

    .venv/bin/python bench/milter_pipeline_instructions.py --milter postveil --messages 100
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from milter_world import (
    BenchError,
    BenchWorld,
    MilterProcess,
    ScriptProcess,
    clean_message,
    smtp_source,
)

SENDER = "rota@clinic.test"
RUN_TIMEOUT = 3000.0
START_TIMEOUT = 600.0
MAX_MESSAGES = 2000


def callgrind_total(output_dir: Path, timeout: float = 60.0) -> int:
    """Return the instruction total of the callgrind dump in ``output_dir``, waiting
    until valgrind has written its total line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for dump in output_dir.glob("callgrind.*"):
            match = re.search(r"^totals: (\d+)", dump.read_text(errors="replace"), re.MULTILINE)
            if match is not None:
                return int(match.group(1))
        time.sleep(0.5)
    raise BenchError(f"callgrind wrote no dump with a total in {output_dir} within {timeout:.0f}s")


def callgrind_control(option: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=60
    )


def start_milter(bench: BenchWorld, kind: str, output_dir: Path) -> MilterProcess:
    spec, smtpd_milters, ready = bench._socket_for("unix")
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output_dir}/callgrind.%p"]
    if kind == "postveil":
        config = bench.milter_config(spec, fsync="always", log_level="INFO")
        path = bench.world.base_dir / "milter-callgrind.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        command = [*valgrind, sys.executable, "-m", "postveil.milter.daemon", "--config", str(path)]
    else:
        script = Path(__file__).with_name("trivial_milter.py")
        command = [*valgrind, sys.executable, str(script), "--socket", spec, "--callbacks", "quiet"]
    daemon = ScriptProcess(command, bench.world.log_dir / f"milter-callgrind-{kind}.log", ready)
    daemon.start(timeout=START_TIMEOUT)
    milter = MilterProcess(daemon, smtpd_milters)
    bench.milters[f"callgrind-{kind}"] = milter
    return milter


def send(bench: BenchWorld, message_file: Path, recipient: str, count: int) -> None:
    bench.mark_maillog()
    smtp_source(
        bench.postfix.port, messages=count, sessions=1, message_file=message_file,
        sender=SENDER, recipient=recipient, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    bench.wait_delivered(count, RUN_TIMEOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--milter",
        choices=("postveil", "trivial"),
        default="postveil",
        help="milter to count (default postveil)",
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=100,
        help=f"counted messages (at most {MAX_MESSAGES}, default 100)",
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="messages sent before counting (default 20)"
    )
    args = parser.parse_args()
    if not 0 < args.messages <= MAX_MESSAGES or not 0 <= args.warmup <= MAX_MESSAGES:
        parser.error(f"--messages must be 1-{MAX_MESSAGES} and --warmup 0-{MAX_MESSAGES}")
    for tool in ("valgrind", "callgrind_control", "smtp-source"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found in PATH: install valgrind and postfix")

    with (
        tempfile.TemporaryDirectory(prefix="postveil-callgrind-") as directory,
        BenchWorld() as bench,
    ):
        output_dir = Path(directory)
        milter = start_milter(bench, args.milter, output_dir)
        # The socket exists before the daemon has finished starting under valgrind.
        time.sleep(5)
        recipient = f"staff@{bench.domain}"
        message_file = bench.world.base_dir / "message.eml"
        message_file.write_bytes(clean_message(10_240, SENDER, recipient))
        bench.attach(milter)
        if args.warmup:
            send(bench, message_file, recipient, args.warmup)
        callgrind_control("--zero", milter.pid)
        send(bench, message_file, recipient, args.messages)
        callgrind_control("--dump", milter.pid)
        total = callgrind_total(output_dir)
    print(
        f"{args.milter} milter: {args.messages} messages, {total / args.messages:,.0f} instructions per message"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
