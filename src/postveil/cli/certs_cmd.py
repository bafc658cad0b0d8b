"""``postveil certs``: list, import and remove recipients' S/MIME certificates."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from postveil.config.smime import SmimeSection
from postveil.crypto.errors import SmimeFailure
from postveil.crypto.smime import (
    CertificateStore,
    StoredCertificate,
    certificate_addresses,
    fingerprint,
    load_pem_certificates,
)
from postveil.cli.common import add_config_option, load_cli_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "certs",
        help="manage recipients' S/MIME certificates",
        description="Manage the recipient certificates in smime.certificate_dir. A "
        "certificate serves the email addresses in its subjectAltName and subject.",
    )
    add_config_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="list certificates with their addresses and status")
    importer = actions.add_parser("import", help="copy a PEM certificate into the directory")
    importer.add_argument("file", help="PEM file: the recipient certificate, then any intermediates")
    importer.add_argument(
        "--force", action="store_true", help="import even when the certificate is not usable now"
    )
    remover = actions.add_parser("remove", help="remove a certificate")
    remover.add_argument("id", help="SHA-256 fingerprint, or its first 16 or more hex digits")
    parser.set_defaults(handler=run)


def _format(stored: StoredCertificate, status: str) -> str:
    expires = stored.certificate.not_valid_after_utc.strftime("%Y-%m-%d")
    addresses = ", ".join(stored.addresses) or "(no email address)"
    return f"{stored.fingerprint}  expires {expires}  {status}  {addresses}  {Path(stored.path).name}"


def run(args: argparse.Namespace) -> int:
    config = load_cli_config(args.config)
    if config is None:
        return 1
    section = config.smime
    store = CertificateStore(section.certificate_dir, section.trust_store)
    try:
        if args.action == "list":
            for stored in store.certificates():
                print(_format(stored, store.check(stored.certificate) or "usable"))
            for problem in store.problems:
                print(f"skipped: {problem}", file=sys.stderr)
            return 0
        if args.action == "import":
            return _import(store, section, args.file, args.force)
        return _remove(store, args.id)
    except SmimeFailure as exc:
        print(f"postveil certs {args.action}: {exc}", file=sys.stderr)
        return 1


def _import(store: CertificateStore, section: SmimeSection, file: str, force: bool) -> int:
    try:
        data = Path(file).read_bytes()
        certificates = load_pem_certificates(data, file)
    except OSError as exc:
        print(f"postveil certs import: cannot read {file}: {exc.strerror}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"postveil certs import: {exc}", file=sys.stderr)
        return 1

    leaf = certificates[0]
    if not certificate_addresses(leaf):
        print(f"postveil certs import: {file}: the first certificate has no email address", file=sys.stderr)
        return 1

    store.refresh()
    problem = store.check(leaf)
    if problem is not None and not force:
        print(
            f"postveil certs import: {file}: {problem}; {_remedy(problem)}",
            file=sys.stderr,
        )
        return 1

    directory = Path(section.certificate_dir)
    target = directory / f"{fingerprint(leaf)[:16].lower()}.pem"
    # Write to a temporary file and rename, so the milter never reads half a file.
    temporary = ""
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(handle, "wb") as output:
            output.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except OSError as exc:
        if temporary:
            Path(temporary).unlink(missing_ok=True)
        print(f"postveil certs import: cannot write {target}: {exc.strerror}", file=sys.stderr)
        return 1

    stored = StoredCertificate(str(target), leaf, fingerprint(leaf), certificate_addresses(leaf))
    print("imported " + _format(stored, problem or "usable"))
    return 0


def _remove(store: CertificateStore, cert_id: str) -> int:
    prefix = cert_id.upper().replace(":", "")
    matches = [s for s in store.certificates() if len(prefix) >= 16 and s.fingerprint.startswith(prefix)]
    if len(matches) != 1:
        found = "no certificate" if not matches else f"{len(matches)} certificates"
        print(
            f"postveil certs remove: {found} match {cert_id!r}; give at least 16 hex digits "
            "of a fingerprint shown by 'postveil certs list'",
            file=sys.stderr,
        )
        return 1
    path = Path(matches[0].path)
    others = [s for s in store.certificates() if s.path == matches[0].path and s is not matches[0]]
    try:
        path.unlink()
    except OSError as exc:
        print(f"postveil certs remove: cannot delete {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"removed {matches[0].fingerprint} ({path.name})")
    for other in others:
        print(f"also removed {other.fingerprint}, which was in the same file")
    return 0


def _remedy(problem: str) -> str:
    """Suggest the fix that matches the reason a certificate cannot be used."""
    if "trust store" in problem:
        return "add the issuing CA to smime.trust_store, or use --force to store it anyway"
    if "expired" in problem or "not yet valid" in problem:
        return "ask the recipient for a current certificate, or use --force to store it anyway"
    return "ask the recipient for a certificate postveil can encrypt to, or use --force to store it anyway"
