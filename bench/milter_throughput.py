"""End-to-end throughput of the private Postfix with and without postveil-milter.

Postfix's ``smtp-source`` submits messages to the harness's private Postfix on
127.0.0.1; Postfix delivers them to ``smtp-sink``, the MX of an invented domain on a
loopback address (found through the DNS fixture). Configurations run side by side in
one process, interleaved round by round, and the median of the rounds is reported:

- ``none``: no milter;
- ``unix``: postveil-milter on a unix socket;
- ``inet``: postveil-milter on ``inet:PORT@127.0.0.1``;
- ``unix+never`` and so on: the same with another ``audit.fsync``;
- ``trivial-postveil-unix``, ``trivial-minimal-inet`` and so on: bench/trivial_milter.py
  (accepts everything) with postveil's callbacks on a TCP socket (``postveil``), on a
  unix socket (``quiet``; ``quietflags`` also asks for postveil's header, body and
  recipient actions), or only end of message (``minimal``).

Scenarios:

- ``clean``: one recipient, a plain-text message with nothing to detect;
- ``escalated``: a ``[secure]``-tagged message to one S/MIME and one PGP recipient
  (``esc@`` and ``2esc@``, the second name from ``smtp-source -r 2``), so each message
  is encrypted twice and one version is re-injected into Postfix.

Two throughputs per run: *accepted* is messages over the time smtp-source took (every
message accepted by Postfix, the milter's verdict included); *delivered* is messages
over the time until the sink had every copy. Each run waits for an empty queue before
the next one starts.

    .venv/bin/python bench/milter_throughput.py --scenario clean --messages 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from dataclasses import dataclass

from milter_world import (
    BenchError,
    BenchWorld,
    MilterProcess,
    clean_message,
    machine_summary,
    require_tools,
    smtp_source,
    system_cpu_seconds,
)

SENDER = "rota@clinic.test"
MAX_MESSAGES = 20_000
RUN_TIMEOUT = 600.0


@dataclass
class RunResult:
    config: str
    round: int
    accept_seconds: float
    deliver_seconds: float
    milter_cpu_ms: float | None
    """Milter CPU time per message in ms (user + system), None without a milter."""
    system_cpu_ms: float
    """CPU time of the whole machine per message in ms, other work on it included."""
    busy: float
    """Fraction of the machine's CPU time that was busy during the run."""
    deferred: int


def run_once(
    bench: BenchWorld, name: str, milter: MilterProcess | None, round_number: int, args: argparse.Namespace,
    message_file: str, recipient: str, deliveries_per_message: int,
) -> RunResult:
    bench.attach(milter)
    bench.wait_queue_empty(60)
    bench.mark_maillog()

    cpu_before = milter.cpu_seconds() if milter else 0.0
    busy_before, total_before = system_cpu_seconds()
    started = time.monotonic()
    accept = smtp_source(
        bench.postfix.port,
        messages=args.messages,
        sessions=args.sessions,
        message_file=message_file,
        sender=SENDER,
        recipient=recipient,
        recipients=deliveries_per_message,
        timeout=RUN_TIMEOUT,
    )
    done, deferred = bench.wait_delivered(args.messages * deliveries_per_message, RUN_TIMEOUT)

    busy_after, total_after = system_cpu_seconds()
    system_ms = 1000 * (busy_after - busy_before) / args.messages
    busy = (busy_after - busy_before) / max(total_after - total_before, 1e-9)
    cpu_ms = None
    if milter is not None:
        cpu_ms = 1000 * (milter.cpu_seconds() - cpu_before) / args.messages
    bench.wait_queue_empty(60)

    result = RunResult(name, round_number, accept, done - started, cpu_ms, system_ms, busy, deferred)
    print(
        f"round {round_number} {name:22s} accepted in {accept:6.2f} s ({args.messages / accept:7.1f}/s), "
        f"delivered in {done - started:6.2f} s ({args.messages / (done - started):7.1f}/s)"
        + f", machine CPU {system_ms:.1f} ms/message ({100 * busy:.0f}% busy)"
        + (f", milter CPU {cpu_ms:.2f} ms/message" if cpu_ms is not None else "")
        + (f", {deferred} deferred" if deferred else ""),
        flush=True,
    )
    return result


def summarise(results: list[RunResult], configs: list[str], messages: int) -> None:
    print()
    print(
        "| configuration | accepted/s | delivered/s | vs none, accepted | vs none, delivered "
        "| milter CPU ms/message | machine CPU ms/message | machine busy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    medians: dict[str, tuple[float, float]] = {}
    for name in configs:
        rows = [r for r in results if r.config == name]
        accepted = statistics.median(messages / r.accept_seconds for r in rows)
        delivered = statistics.median(messages / r.deliver_seconds for r in rows)
        medians[name] = (accepted, delivered)
        cpu = [r.milter_cpu_ms for r in rows if r.milter_cpu_ms is not None]
        base = medians.get("none")
        accepted_ratio = f"{accepted / base[0]:.2f}x" if base else "-"
        delivered_ratio = f"{delivered / base[1]:.2f}x" if base else "-"
        cpu_text = f"{statistics.median(cpu):.2f}" if cpu else "-"
        system = statistics.median(r.system_cpu_ms for r in rows)
        busy = statistics.median(r.busy for r in rows)
        print(
            f"| {name} | {accepted:.1f} | {delivered:.1f} | {accepted_ratio} | {delivered_ratio} | {cpu_text} "
            f"| {system:.1f} | {100 * busy:.0f}% |"
        )
    print()
    print("runs (accepted s / delivered s):")
    for name in configs:
        rows = [r for r in results if r.config == name]
        print(f"  {name}: " + ", ".join(f"{r.accept_seconds:.2f}/{r.deliver_seconds:.2f}" for r in rows))


def report_methods(milters: dict[str, MilterProcess | None], smime: str, pgp: str) -> None:
    """Count the milter's per-recipient decisions, to show every message was encrypted."""
    for name, milter in milters.items():
        if milter is None:
            continue
        text = milter.daemon.log_text()
        print(
            f"milter {name}: {text.count(f'rcpt=<{smime}> method=smime')} S/MIME and "
            f"{text.count(f'rcpt=<{pgp}> method=pgp')} PGP decisions, "
            f"{text.count('re-injected')} re-injected versions, {text.count('temporary failure')} temporary failures"
        )


def valid_config(name: str) -> bool:
    if name == "none":
        return True
    if name.startswith("trivial-"):
        parts = name.split("-")
        return len(parts) == 3 and parts[1] in ("minimal", "postveil", "quiet", "quietflags") and parts[2] in ("unix", "inet")
    kind, _, fsync = name.partition("+")
    return kind in ("unix", "inet") and fsync in ("", "always", "batch", "never")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("clean", "escalated"), default="clean")
    parser.add_argument("--messages", type=int, default=2000, help=f"messages per run (at most {MAX_MESSAGES})")
    parser.add_argument("--sessions", type=int, default=10, help="parallel SMTP sessions of smtp-source (-s)")
    parser.add_argument("--size", type=int, default=10_240, help="message size in bytes")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each configuration (at most 9)")
    parser.add_argument(
        "--configs", default=None,
        help="comma-separated configurations: none, unix or inet, the last two optionally with +FSYNC "
        "to override --fsync, for example unix+never (default: none,unix,inet for clean, unix for escalated)",
    )
    parser.add_argument("--fsync", choices=("always", "batch", "never"), default="always", help="audit.fsync of the milters")
    parser.add_argument("--log-level", default="INFO", help="logging.level of the milters")
    args = parser.parse_args()
    if not 0 < args.messages <= MAX_MESSAGES or not 0 < args.rounds <= 9:
        parser.error(f"--messages must be 1-{MAX_MESSAGES} and --rounds 1-9")
    default_configs = "none,unix,inet" if args.scenario == "clean" else "unix"
    configs = (args.configs or default_configs).split(",")
    for name in configs:
        if not valid_config(name):
            parser.error(
                f"unknown configuration {name!r}: expected none, unix, inet, unix+FSYNC, inet+FSYNC "
                "or trivial-CALLBACKS-KIND (CALLBACKS minimal, postveil, quiet or quietflags, KIND unix or inet)"
            )

    require_tools()
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"host: {machine_summary()}")
    print(" ".join(sys.argv))
    with BenchWorld() as bench:
        if args.scenario == "clean":
            recipient = f"staff@{bench.domain}"
            raw = clean_message(args.size, SENDER, recipient)
            deliveries = 1
        else:
            smime = bench.world.add_smime_recipient(f"esc@{bench.domain}")
            pgp = bench.world.add_pgp_recipient(f"2esc@{bench.domain}")
            recipient = smime.address
            raw = clean_message(args.size, SENDER, f"{smime.address}>, <{pgp.address}", subject="[secure] Referral")
            deliveries = 2
        message_file = bench.world.base_dir / "message.eml"
        message_file.write_bytes(raw)
        print(f"scenario: {args.scenario}, message {len(raw)} bytes, {args.messages} messages per run, "
              f"smtp-source -s {args.sessions}, audit.fsync {args.fsync}")

        milters: dict[str, MilterProcess | None] = {"none": None}
        for name in configs:
            if name.startswith("trivial-"):
                _, callbacks, kind = name.split("-")
                milters[name] = bench.start_trivial_milter(kind, callbacks)
            elif name != "none":
                kind, _, fsync = name.partition("+")
                milters[name] = bench.start_milter(kind, fsync=fsync or args.fsync, log_level=args.log_level)
        results = []
        for round_number in range(1, args.rounds + 1):
            for name in configs:
                results.append(
                    run_once(bench, name, milters[name], round_number, args, str(message_file), recipient, deliveries)
                )
        summarise(results, configs, args.messages)
        if args.scenario == "escalated":
            report_methods(milters, smime.address, pgp.address)
        for name, milter in milters.items():
            if milter is not None:
                user, system = milter.cpu_split()
                print(
                    f"milter {name}: VmHWM {milter.status_kib('VmHWM')} kB, {milter.open_files()} open files, "
                    f"CPU user {user:.2f} s, system {system:.2f} s"
                )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"milter_throughput: {exc}", file=sys.stderr)
        sys.exit(1)
