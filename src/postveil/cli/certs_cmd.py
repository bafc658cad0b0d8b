"""``postveil certs``: list, import and remove recipients' S/MIME certificates."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from postveil.cli.admin_audit import AdminAuditError, AdminChangeLog
from postveil.cli.common import (
    EXPIRING_FOUND,
    add_config_option,
    add_config_option_to_actions,
    add_expiring_option,
    add_reason_option,
    days_text,
    load_cli_config,
)
from postveil.config import Config
from postveil.crypto.errors import SmimeFailure
from postveil.crypto.smime import (
    CA_PROBLEM,
    UNTRUSTED_ROOT_PROBLEM,
    CertificateStore,
    StoredCertificate,
    certificate_addresses,
    contains_private_key,
    fingerprint,
    is_ca_certificate,
    load_pem_certificates,
)

# Stored files are readable by the owner and the certificate directory's group (the
# milter's group), not by every local user, because the certificates contain patients'
# email addresses.
CERTIFICATE_FILE_MODE = 0o640


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "certs",
        help="manage recipients' S/MIME certificates",
        description="Manage the recipient certificates in smime.certificate_dir. A "
        "certificate serves the email addresses in its subjectAltName and subject.",
    )
    add_config_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lister = actions.add_parser("list", help="list certificates with their addresses and status")
    add_expiring_option(lister, "usable certificates")
    importer = actions.add_parser(
        "import",
        help="store a PEM certificate in the directory (files with a private key are rejected)",
    )
    importer.add_argument("file", help="PEM file: the recipient certificate, then any intermediates")
    importer.add_argument(
        "--force", action="store_true", help="import even when the certificate is not usable now"
    )
    remover = actions.add_parser("remove", help="remove a certificate")
    remover.add_argument("id", help="SHA-256 fingerprint, or its first 16 or more hex digits")
    remover.add_argument(
        "--force", action="store_true",
        help="also delete the recipient certificates stored in the same file "
        "(needed to remove a CA certificate stored with a recipient's certificate)",
    )
    add_reason_option(importer)
    add_reason_option(remover)
    add_config_option_to_actions(actions)
    parser.set_defaults(handler=run)


def _format(stored: StoredCertificate, status: str) -> str:
    expires = stored.certificate.not_valid_after_utc.strftime("%Y-%m-%d")
    addresses = ", ".join(stored.addresses) or "(no email address)"
    return f"{stored.fingerprint}  expires {expires}  {status}  {addresses}  {Path(stored.path).name}"


def _status(store: CertificateStore, stored: StoredCertificate) -> str:
    if stored.is_ca:
        return "CA certificate (intermediate only)"
    problem = store.check(stored.certificate)
    if problem is None:
        return "usable"
    if problem == UNTRUSTED_ROOT_PROBLEM:
        return problem + _problem_detail(store, stored.certificate, problem)
    return problem


def _problem_detail(
    store: CertificateStore,
    certificate: x509.Certificate,
    problem: str,
    chain: Sequence[x509.Certificate] = (),
) -> str:
    """Name the CA behind a chain problem, for the admin's terminal only.

    The store's reasons leave names out because routing reasons and audit records quote
    them. The admin needs the CA's name to fix the trust store.
    """
    if problem == UNTRUSTED_ROOT_PROBLEM:
        root = store.untrusted_root(certificate, chain)
        if root is not None:
            return f" (root CA: {root.subject.rfc4514_string()})"
    if "trust store" in problem and certificate.issuer != certificate.subject:
        return f" (issuer: {certificate.issuer.rfc4514_string()})"
    return ""


def run(args: argparse.Namespace) -> int:
    config = load_cli_config(args.config)
    if config is None:
        return 1
    section = config.smime
    # `list` prints the skipped files itself, so the store does not log them too.
    store = CertificateStore(section.certificate_dir, section.trust_store, log_problems=False)
    try:
        if args.action == "list":
            return _list(store, args.expiring)
        if args.action == "import":
            return _import(store, config, args.file, args.force, args.reason)
        return _remove(store, config, args.id, args.reason, args.force)
    except (SmimeFailure, AdminAuditError) as exc:
        print(f"postveil certs {args.action}: {exc}", file=sys.stderr)
        return 1


def _list(store: CertificateStore, expiring_days: int | None) -> int:
    if expiring_days is None:
        for stored in store.all_certificates():
            print(_format(stored, _status(store, stored)))
        listed = 0
    else:
        listed = _list_expiring(store, expiring_days)
    for problem in store.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    return EXPIRING_FOUND if listed else 0


def _list_expiring(store: CertificateStore, days: int) -> int:
    """Print the certificates that :func:`expiring_certificates` returns; return their count."""
    expiring = expiring_certificates(store, days)
    later = store.clock() + datetime.timedelta(days=days)
    for stored, problem in expiring:
        detail = _expiry_detail(store, stored, later)
        print(_format(stored, f"usable, but in {days_text(days)}: {problem}{detail}"))
    return len(expiring)


def expiring_certificates(store: CertificateStore, days: int) -> list[tuple[StoredCertificate, str]]:
    """Return the recipient certificates usable now that will not be in ``days`` days,
    because they or a certificate of their chain expire by then, each with the reason."""
    now = store.clock()
    later = now + datetime.timedelta(days=days)
    expiring = []
    for stored in store.all_certificates():
        if stored.is_ca or store.check(stored.certificate, now) is not None:
            continue
        problem = store.check(stored.certificate, later)
        if problem is not None:
            expiring.append((stored, problem))
    return expiring


def _expiry_detail(
    store: CertificateStore, stored: StoredCertificate, later: datetime.datetime
) -> str:
    """Name the CA certificates whose expiry breaks the chain by ``later``, for the
    admin's terminal only (see :func:`_problem_detail`)."""
    if stored.certificate.not_valid_after_utc < later:
        return ""
    expiring = store.expiring_issuers(stored.certificate, later)
    if not expiring:
        return ""
    names = "; ".join(
        f"{ca.subject.rfc4514_string()} expires {ca.not_valid_after_utc:%Y-%m-%d}"
        for ca in expiring
    )
    return f" (CA certificate {names})"


def _fail(message: str) -> int:
    print(f"postveil certs import: {message}", file=sys.stderr)
    return 1


def _import(store: CertificateStore, config: Config, file: str, force: bool, reason: str) -> int:
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {file}: {exc.strerror}")
    if contains_private_key(data):
        return _fail(
            f"{file} contains a private key, which must never be stored with the "
            "recipient certificates; nothing was imported. Keep only the BEGIN CERTIFICATE "
            "blocks in the file and import it again"
        )
    try:
        certificates = load_pem_certificates(data, file)
    except ValueError as exc:
        hint = ""
        if "no PEM certificate" in str(exc):
            hint = (
                " (for a PKCS#12 file, extract the certificates with "
                "'openssl pkcs12 -in FILE -nokeys -out cert.pem')"
            )
        return _fail(f"{exc}{hint}; nothing was imported")

    leaf, chain = certificates[0], certificates[1:]
    # A CA certificate on its own is stored as an intermediate, which needs no address.
    if not certificate_addresses(leaf) and not is_ca_certificate(leaf):
        return _fail(f"{file}: the first certificate has no email address; nothing was imported")

    store.refresh()
    problem = store.check(leaf, extra_intermediates=chain)
    if problem is not None and not force:
        return _fail(f"{file}: {problem}{_problem_detail(store, leaf, problem, chain)}; {_remedy(problem)}")

    directory = Path(config.smime.certificate_dir)
    leaf_fingerprint = fingerprint(leaf)
    target = directory / f"{leaf_fingerprint[:16].lower()}.pem"
    command = f"postveil certs import{' --force' if force else ''} {file}"
    changes = AdminChangeLog(config.audit, "postveil certs", command, reason)
    try:
        changes.record("cert-import", certificate_addresses(leaf), leaf_fingerprint)
    except AdminAuditError as exc:
        return _fail(f"{exc}; nothing was imported")
    finally:
        changes.close()

    # Only the parsed certificates are written, never other bytes of the input file.
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    try:
        _write_certificate_file(directory, target, pem)
    except OSError as exc:
        return _fail(f"cannot write {target}: {exc.strerror}")

    stored = StoredCertificate(
        str(target),
        leaf,
        leaf_fingerprint,
        certificate_addresses(leaf),
        is_ca=problem == CA_PROBLEM,
    )
    store.refresh()  # so that the status counts the intermediates just written
    print("imported " + _format(stored, _status(store, stored)))
    return 0


def _write_certificate_file(directory: Path, target: Path, pem: bytes) -> None:
    """Write ``pem`` to ``target`` atomically, mode 0640 and the directory's group.

    A temporary file is renamed into place, so the milter never reads half a file.
    """
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as output:
            output.write(pem)
            os.fchmod(output.fileno(), CERTIFICATE_FILE_MODE)
            try:
                os.fchown(output.fileno(), -1, directory.stat().st_gid)
            except PermissionError:
                # Not root and not in that group: the file keeps the caller's group.
                pass
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _remove(store: CertificateStore, config: Config, cert_id: str, reason: str, force: bool) -> int:
    prefix = cert_id.upper().replace(":", "")
    certificates = store.all_certificates()
    matches = [s for s in certificates if len(prefix) >= 16 and s.fingerprint.startswith(prefix)]
    if len(matches) != 1:
        found = "no certificate matches" if not matches else f"{len(matches)} certificates match"
        print(
            f"postveil certs remove: {found} {cert_id!r}; give at least 16 hex digits "
            "of a fingerprint shown by 'postveil certs list'",
            file=sys.stderr,
        )
        return 1
    match = matches[0]
    path = Path(match.path)
    others = [s for s in certificates if s.path == match.path and s is not match]
    recipients = [other for other in others if not other.is_ca]
    if recipients and not force:
        print(
            f"postveil certs remove: {path.name} also contains the recipient certificate(s) "
            + ", ".join(f"{other.fingerprint} ({', '.join(other.addresses) or 'no email address'})"
                        for other in recipients)
            + ", which would be deleted with it; nothing was removed. Use --force to delete "
            "the whole file",
            file=sys.stderr,
        )
        return 1

    changes = AdminChangeLog(config.audit, "postveil certs", f"postveil certs remove{' --force' if force else ''} {cert_id}", reason)
    try:
        for removed in (match, *others):
            changes.record("cert-remove", removed.addresses, removed.fingerprint)
    except AdminAuditError as exc:
        print(f"postveil certs remove: {exc}; nothing was removed", file=sys.stderr)
        return 1
    finally:
        changes.close()

    try:
        path.unlink()
    except OSError as exc:
        print(f"postveil certs remove: cannot delete {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"removed {match.fingerprint} ({path.name})")
    for other in others:
        print(f"also removed {other.fingerprint}, which was in the same file")
    return 0


def _remedy(problem: str) -> str:
    """Suggest the fix that matches the reason a certificate cannot be used."""
    if problem == CA_PROBLEM:
        return (
            "a CA certificate serves only as an intermediate of recipient certificates; "
            "use --force to store it as one"
        )
    if problem == UNTRUSTED_ROOT_PROBLEM:
        return "add that root CA to smime.trust_store if you trust it, or use --force to store it anyway"
    if "trust store" in problem:
        return "add the issuing CA to smime.trust_store, or use --force to store it anyway"
    if "expired" in problem or "not yet valid" in problem:
        return "ask the recipient for a current certificate, or use --force to store it anyway"
    return "ask the recipient for a certificate postveil can encrypt to, or use --force to store it anyway"
