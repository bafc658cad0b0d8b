"""Python heap peak of the detection scan and of routing for one large clean message.

Runs in one process with tracemalloc, without Postfix or the milter protocol:
``Detector.scan_message`` and ``process_message`` on a plain-text message of ``--size``
bytes, with ``detection.max_part_size`` raised so the whole body is scanned. The peak
counts Python allocations only (not the interpreter or libraries at start-up), so it
shows which step keeps copies of the message.

    .venv/bin/python bench/detection_memory.py --size 25MB
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import tracemalloc
from pathlib import Path

import yaml
from milter_memory import large_message, parse_size

from postveil.audit import generate_key_file
from postveil.config import load_config
from postveil.crypto.pipeline import process_message
from postveil.milter.processor import MessageProcessor

MAX_SIZE = 60_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="25MB", help="message size, for example 25MB (at most 60MB)")
    args = parser.parse_args()
    size = parse_size(args.size)
    if not 0 < size <= MAX_SIZE:
        parser.error(f"--size must be 1-{MAX_SIZE} bytes")

    with tempfile.TemporaryDirectory(prefix="postveil-bench-") as directory:
        root = Path(directory)
        for name in ("audit", "smime"):
            (root / name).mkdir()
        (root / "gnupg").mkdir(mode=0o700)
        generate_key_file(root / "audit.key")
        config = {
            "milter": {"socket": f"unix:{root / 'milter.sock'}", "max_message_size": "60MB"},
            "detection": {"max_part_size": "60MB"},
            "policyd": {"cache_path": str(root / "tlsfacts.sqlite3")},
            "pgp": {"gnupg_home": str(root / "gnupg")},
            "smime": {"certificate_dir": str(root / "smime")},
            "audit": {"directory": str(root / "audit"), "key_file": str(root / "audit.key")},
        }
        (root / "postveil.yaml").write_text(yaml.safe_dump(config))
        processor = MessageProcessor(load_config(str(root / "postveil.yaml")))
        recipient = "archive@bench-dest.test"
        raw = large_message(size, recipient)

        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        verdict = processor.detector.scan_message(raw)
        scan_peak = tracemalloc.get_traced_memory()[1] - base

        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        process_message(
            raw, queue_id="B1", sender="scans@clinic.test", recipients=[recipient], verdict=verdict,
            tls={}, context=processor.context,
        )
        process_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        processor.close()

    print(f"message: {len(raw)} bytes, sensitive: {verdict.sensitive}")
    for name, peak in (("Detector.scan_message", scan_peak), ("process_message", process_peak)):
        print(f"{name}: peak {peak / 1e6:.1f} MB over the message itself ({peak / len(raw):.1f}x the message)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
