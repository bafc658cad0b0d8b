"""Measure audit appends per second and verify speed.

Usage: python bench/audit_append.py [--records N] [--processes P] [--threads T]
                                    [--fsync always|batch|never] [--directory DIR]

Writes N message decisions (two recipients each) from P processes with T threads each
into a temporary directory under DIR (default: the system temp dir). Then verifies the
chain and prints appends/s, the mean time per append and verified records/s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path

from postveil.audit import (
    AuditKey,
    AuditLog,
    MessageDecision,
    RecipientDecision,
    generate_key_file,
    list_log_files,
    verify_chain,
)
from postveil.audit.verify import default_head_for
from postveil.config.audit import AuditSection


def decision(number: int) -> MessageDecision:
    return MessageDecision(
        queue_id=f"4Fq{number:08d}",
        message_id=f"<bench{number}@clinic.example>",
        sender="frontdesk@clinic.example",
        recipients=[
            RecipientDecision("pat@patient.example", "tls", "rule:tls-verified"),
            RecipientDecision("lab@lab.example", "smime", "rule:smime-cert", fingerprint="ab" * 32),
        ],
        detections={"ssn": 1, "mrn": 2},
        tags=["subject:secure"],
        config_version="0123456789abcdef",
    )


def write(section: AuditSection, count: int, threads: int, start: threading.Event | None) -> None:
    log = AuditLog(section, "bench")
    share = count // threads

    def run() -> None:
        for number in range(share):
            log.append(decision(number))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    if start is not None:
        start.wait()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fsync", choices=["always", "batch", "never"], default="always")
    parser.add_argument("--directory", default=None, help="parent of the temporary log directory")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.directory) as root:
        key_path = Path(root) / "audit.key"
        key = generate_key_file(key_path)
        section = AuditSection(
            directory=str(Path(root) / "audit"),
            key_file=str(key_path),
            fsync=args.fsync,
            rotate_size="100MB",
        )
        per_process = args.records // args.processes
        fork = multiprocessing.get_context("fork")
        start = fork.Event()
        processes = [
            fork.Process(target=write, args=(section, per_process, args.threads, start))
            for _ in range(args.processes)
        ]
        for process in processes:
            process.start()
        began = time.perf_counter()
        start.set()
        for process in processes:
            process.join()
        elapsed = time.perf_counter() - began

        files = list_log_files(section.directory)
        verify_began = time.perf_counter()
        result = verify_chain(
            files, {key.key_id: AuditKey.load(key_path)}, head=default_head_for(files)
        )
        verify_elapsed = time.perf_counter() - verify_began

    assert result.broken is None, str(result.broken)
    written = result.records
    print(
        f"fsync={args.fsync} processes={args.processes} threads={args.threads} "
        f"records={written}: {written / elapsed:,.0f} appends/s "
        f"({elapsed / written * 1e6:,.0f} us each), "
        f"verify {written / verify_elapsed:,.0f} records/s"
    )


if __name__ == "__main__":
    main()
