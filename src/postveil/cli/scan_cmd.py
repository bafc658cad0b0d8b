"""``postveil scan``: run the PHI detector on message files and print its verdicts.

Prints categories and counts only, never a matched value, so the output may be pasted
into a ticket.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from postveil.classifier.client import ClassifierUnavailable, SecondOpinion
from postveil.cli.common import report_config_error
from postveil.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, load_config
from postveil.config.detection import DetectionSection
from postveil.detection import Detector, Verdict
from postveil.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="check message files for PHI",
        description="Scan RFC 5322 message files (.eml) for PHI and print one verdict per "
        "file. Exits 0 when every file was read, 1 when a file could not be read or "
        "postveil-classifierd (enabled in the configuration) did not answer, and 2 when "
        "the configuration cannot be read or is invalid.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=(
            "configuration file whose detection section to use (default: $POSTVEIL_CONFIG, "
            f"else {DEFAULT_CONFIG_PATH} when it exists, else built-in defaults)"
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per line instead of text"
    )
    parser.add_argument(
        "--no-classifier",
        action="store_true",
        help="do not ask postveil-classifierd even when the configuration enables it",
    )
    parser.add_argument("files", nargs="+", metavar="FILE.eml", help="message files to scan")
    parser.set_defaults(handler=run)


def config_to_use(config_path: str | None) -> str | None:
    """Return the configuration file that ``scan`` reads: ``--config``, else
    $POSTVEIL_CONFIG, else the installed configuration when it exists, else ``None``
    (built-in defaults), so that a site's own MRN format and keywords apply on its
    gateway and a checkout without a configuration still scans."""
    if config_path:
        return config_path
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV]
    if os.path.exists(DEFAULT_CONFIG_PATH):
        return DEFAULT_CONFIG_PATH
    return None


def build_detector(config_path: str | None) -> Detector:
    """Build a detector from a configuration file, or from defaults when ``None``.

    Raises ConfigError when the file is missing or invalid.
    """
    section = load_config(config_path).detection if config_path else DetectionSection()
    return Detector(section)


def verdict_record(path: str, verdict: Verdict, *, classifier: bool = False) -> dict[str, object]:
    record: dict[str, object] = {
        "file": path,
        "sensitive": verdict.sensitive,
        "score": verdict.score,
        "rule": verdict.rule,
        "categories": verdict.categories,
        "unscanned_parts": verdict.unscanned_parts,
    }
    if classifier:
        # The model's probability, or null when the message was not sent to it or the
        # daemon failed; "classifier_error" then gives the reason.
        record["classifier"] = verdict.classifier
        if verdict.classifier_error is not None:
            record["classifier_error"] = verdict.classifier_error
    return record


def run(args: argparse.Namespace) -> int:
    config_path = config_to_use(args.config)
    config = None
    if config_path:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            report_config_error(config_path, exc)
            return 2
    detector = Detector(config.detection if config is not None else DetectionSection())
    second_opinion = None
    if config is not None and config.classifier.enabled and not args.no_classifier:
        second_opinion = SecondOpinion(config.classifier, detector)

    status = 0
    for path in args.files:
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
            status = 1
            continue
        verdict, texts = detector.scan_message_texts(raw)
        if second_opinion is not None:
            try:
                verdict = second_opinion.review(verdict, texts)
            except ClassifierUnavailable as exc:
                verdict = dataclasses.replace(verdict, classifier_error=str(exc))
            # With classifier.on_failure: rules, review returns the reason in the verdict.
            if verdict.classifier_error is not None:
                print(
                    f"{path}: the rules' verdict only: {verdict.classifier_error}. Start "
                    "postveil-classifierd, check classifier.socket, or pass --no-classifier.",
                    file=sys.stderr,
                )
                status = 1
        record = verdict_record(path, verdict, classifier=second_opinion is not None)
        if args.json:
            print(json.dumps(record, sort_keys=False))
        else:
            print(_format_text(record))
    return status


def _format_text(record: dict[str, object]) -> str:
    state = "SENSITIVE" if record["sensitive"] else "not sensitive"
    categories = record["categories"]
    assert isinstance(categories, dict)
    listed = ", ".join(f"{name}={count}" for name, count in categories.items()) or "no findings"
    line = f"{record['file']}: {state} (rule {record['rule']}, score {record['score']}): {listed}"
    if record.get("classifier") is not None:
        line += f"; classifier probability {record['classifier']}"
    unscanned = record["unscanned_parts"]
    assert isinstance(unscanned, list)
    for description in unscanned:
        line += f"\n  unscanned: {description}"
    return line
