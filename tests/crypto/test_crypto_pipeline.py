"""The whole library path: raw message and facts in, versions out, decrypted for real."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from crypto_fixtures import GpgWorld, Pki, gpg, gpg_decrypt, openssl_decrypt

from postveil.config.portal import PortalSection
from postveil.config.routing import RoutingSection
from postveil.crypto import CertificateStore, PgpKeyring, RawMessage, RenderContext
from postveil.crypto.errors import PgpFailure, SmimeFailure
from postveil.crypto.pipeline import TlsRequirement, process_message
from postveil.errors import TemporaryFailure
from postveil.routing import Method, PlanAction, VersionKind

ARMOR_RE = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----\r?\n", re.DOTALL)
ENFORCED = TlsRequirement(True, "MTA-STS policy in enforce mode")


@dataclass(frozen=True)
class Verdict:
    sensitive: bool
    score: float = 0.0
    rule: str = "mrn"
    categories: dict[str, int] = field(default_factory=lambda: {"mrn": 1})
    unscanned_parts: list[str] = field(default_factory=list)


def _message(subject: str, to: str, cc: str = "") -> bytes:
    head = f"From: doc@sender.example\r\nTo: {to}\r\n"
    if cc:
        head += f"Cc: {cc}\r\n"
    head += (
        f"Subject: {subject}\r\nMessage-ID: <p1@sender.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return head.encode() + "Befund: unauffällig\r\n".encode()


def _context(pki: Pki, world: GpgWorld, routing: RoutingSection | None = None, portal: str | None = None,
             home: str | None = None, cert_dir: str | None = None) -> RenderContext:
    return RenderContext(
        routing=routing or RoutingSection(),
        portal=PortalSection(intake_address=portal),
        certificates=CertificateStore(cert_dir or str(pki.cert_dir), str(pki.trust_store)),
        keyring=PgpKeyring(home or str(world.postveil_home)),
    )


def _flowing(notice: bytes) -> bytes:
    """Join the notice's wrapped lines, so a phrase can span a line break."""
    return b" ".join(line.strip() for line in notice.split(b"\r\n"))


def _pgp_key_ids(world: GpgWorld, armored: bytes) -> list[str]:
    packets = gpg(world.recipient_home, "--list-packets", input=armored, check=False).stdout.decode()
    return [line.split("keyid ")[1].split()[0] for line in packets.splitlines() if "pubkey enc packet" in line]


def _subkey_id(world: GpgWorld, name: str) -> str:
    out = gpg(world.recipient_home, "--with-colons", "--list-keys", world.fingerprints[name]).stdout.decode()
    return next(line.split(":")[4] for line in out.splitlines() if line.startswith("sub:"))


def test_three_recipients_each_right_form_once(pki: Pki, gpg_world: GpgWorld) -> None:
    recipients = ["x@enforcing.example", "alice@example.org", "nokey@plain.example"]
    raw = _message("Lab results", ", ".join(recipients))

    outcome = process_message(
        raw,
        queue_id="Q1",
        sender="doc@sender.example",
        recipients=recipients,
        verdict=Verdict(True),
        tls={"x@enforcing.example": ENFORCED},
        context=_context(pki, gpg_world, portal="intake@portal.example"),
    )

    assert outcome.plan.action is PlanAction.DELIVER
    methods = {d.recipient: d.method for d in outcome.decisions}
    assert methods == {
        "x@enforcing.example": Method.TLS,
        "alice@example.org": Method.PGP,
        "nokey@plain.example": Method.PORTAL,
    }
    kinds = [(v.group.kind, v.group.recipients, v.envelope_recipients) for v in outcome.versions]
    assert kinds == [
        (VersionKind.CLEARTEXT, ("x@enforcing.example",), ("x@enforcing.example",)),
        (VersionKind.PGP, ("alice@example.org",), ("alice@example.org",)),
        (VersionKind.PORTAL, ("nokey@plain.example",), ("intake@portal.example",)),
    ]
    cleartext, encrypted, portal = outcome.versions
    assert "unauffällig".encode() in cleartext.raw
    assert "unauffällig".encode() not in encrypted.raw
    armored = ARMOR_RE.search(encrypted.raw)
    assert armored is not None
    assert "unauffällig".encode() in gpg_decrypt(gpg_world, armored.group(0))
    assert RawMessage.parse(portal.raw).values("X-Postveil-Portal-Recipient") == ["nokey@plain.example"]


def test_neither_method_rejects_by_default(pki: Pki, gpg_world: GpgWorld) -> None:
    outcome = process_message(
        _message("[secure] Lab", "nokey@plain.example"),
        queue_id="Q2",
        sender="doc@sender.example",
        recipients=["nokey@plain.example"],
        verdict=None,
        tls={},
        context=_context(pki, gpg_world),
    )

    assert outcome.plan.action is PlanAction.REJECT
    assert outcome.versions == ()
    assert "nokey@plain.example" in outcome.plan.reject_reply()[2]
    assert outcome.record.action == "reject"


def test_neither_method_removed_and_notified(pki: Pki, gpg_world: GpgWorld) -> None:
    routing = RoutingSection(no_method_action="remove_and_notify")
    outcome = process_message(
        _message("[secure] Lab", "nokey@plain.example, alice@example.org"),
        queue_id="Q3",
        sender="doc@sender.example",
        recipients=["nokey@plain.example", "alice@example.org"],
        verdict=None,
        tls={},
        context=_context(pki, gpg_world, routing=routing),
    )

    assert outcome.plan.action is PlanAction.REMOVE_AND_NOTIFY
    assert [v.group.recipients for v in outcome.versions] == [("alice@example.org",)]
    assert outcome.notice is not None
    assert b"nokey@plain.example" in outcome.notice
    assert b"Subject: Your message was not delivered to some recipients\r\n" in outcome.notice
    assert b"It was sent to the other recipient." in _flowing(outcome.notice)


@pytest.mark.parametrize("recipients", [["nokey@plain.example"], ["nokey@plain.example", "other@plain.example"]])
def test_notice_when_nobody_left(pki: Pki, gpg_world: GpgWorld, recipients: list[str]) -> None:
    routing = RoutingSection(no_method_action="remove_and_notify")
    raw = _message("[ secure ] Jane Roe MRN 445566", ", ".join(recipients))
    raw = raw.replace(b"Message-ID:", b"Date: Fri, 04 Dec 2026 10:15:03 +0100\r\nMessage-ID:")
    outcome = process_message(
        raw,
        queue_id="Q3B",
        sender="doc@sender.example",
        recipients=recipients,
        verdict=None,
        tls={},
        context=_context(pki, gpg_world, routing=routing),
    )

    assert outcome.plan.action is PlanAction.REMOVE_AND_NOTIFY
    assert outcome.versions == ()
    notice = outcome.notice
    assert notice is not None
    assert b"Subject: Your message was not delivered\r\n" in notice
    assert b"Nobody received it." in _flowing(notice)
    assert b"other recipient" not in notice
    assert b"Fri, 04 Dec 2026 10:15:03 +0100" in notice
    assert b"<p1@sender.example>" in notice
    assert b"[secure]" in notice
    assert b"Jane" not in notice
    assert b"445566" not in notice
    assert "unauffällig".encode() not in notice
    assert b"Befund" not in notice


def test_bcc_pgp_recipient_separate_copy(pki: Pki, gpg_world: GpgWorld) -> None:
    raw = _message("[secure] Lab", "alice@example.org")
    outcome = process_message(
        raw,
        queue_id="Q4",
        sender="doc@sender.example",
        recipients=["alice@example.org", "bob@example.org"],
        verdict=None,
        tls={},
        context=_context(pki, gpg_world),
    )

    assert [(v.group.recipients, v.group.bcc) for v in outcome.versions] == [
        (("alice@example.org",), False),
        (("bob@example.org",), True),
    ]
    to_copy, bcc_copy = outcome.versions
    assert _pgp_key_ids(gpg_world, ARMOR_RE.search(to_copy.raw).group(0)) == [_subkey_id(gpg_world, "alice")]
    assert _pgp_key_ids(gpg_world, ARMOR_RE.search(bcc_copy.raw).group(0)) == [_subkey_id(gpg_world, "bob")]
    assert b"bob@example.org" not in to_copy.raw


def test_tag_gone_outer_neutral_inner_intact(pki: Pki, gpg_world: GpgWorld, tmp_path: Path) -> None:
    outcome = process_message(
        _message("Lab results [SECURE] Müller", "alice@example.org"),
        queue_id="Q5",
        sender="doc@sender.example",
        recipients=["alice@example.org"],
        verdict=None,
        tls={},
        context=_context(pki, gpg_world, routing=RoutingSection(methods={"escalated": ["smime"]})),
    )

    (version,) = outcome.versions
    assert version.group.kind is VersionKind.SMIME
    assert RawMessage.parse(version.raw).values("Subject") == ["Encrypted message"]
    assert b"SECURE" not in version.raw
    inner = RawMessage.parse(openssl_decrypt(version.raw, pki.alice, tmp_path))
    assert inner.values("Subject") == ["Lab results Müller"]
    assert outcome.record.tags == ("[secure]",)


def test_broken_gnupg_home_is_temporary_failure(pki: Pki, gpg_world: GpgWorld, tmp_path: Path) -> None:
    home = tmp_path / "broken"
    home.mkdir(mode=0o700)
    (home / "pubring.kbx").write_bytes(b"garbage")

    with pytest.raises(PgpFailure) as caught:
        process_message(
            _message("[secure] Lab", "alice@example.org"),
            queue_id="Q6",
            sender="doc@sender.example",
            recipients=["alice@example.org"],
            verdict=None,
            tls={},
            context=_context(pki, gpg_world, home=str(home)),
        )
    assert isinstance(caught.value, TemporaryFailure)
    assert "unauffällig" not in str(caught.value)


def test_unreadable_certificate_dir_is_temporary_failure(pki: Pki, gpg_world: GpgWorld, tmp_path: Path) -> None:
    with pytest.raises(SmimeFailure) as caught:
        process_message(
            _message("[smime] Lab", "alice@example.org"),
            queue_id="Q7",
            sender="doc@sender.example",
            recipients=["alice@example.org"],
            verdict=None,
            tls={},
            context=_context(pki, gpg_world, cert_dir=str(tmp_path / "absent")),
        )
    assert isinstance(caught.value, TemporaryFailure)


def test_clean_message_never_runs_gpg(pki: Pki, gpg_world: GpgWorld, tmp_path: Path) -> None:
    outcome = process_message(
        _message("Hello", "alice@example.org"),
        queue_id="Q8",
        sender="doc@sender.example",
        recipients=["alice@example.org"],
        verdict=Verdict(False),
        tls={},
        context=_context(pki, gpg_world, home=str(tmp_path / "absent"), cert_dir=str(tmp_path / "absent")),
    )

    assert [d.method for d in outcome.decisions] == [Method.PLAIN]
    assert outcome.versions[0].raw == _message("Hello", "alice@example.org")


def test_already_encrypted_not_reencrypted(pki: Pki, gpg_world: GpgWorld) -> None:
    armored = gpg(gpg_world.recipient_home, "--armor", "--encrypt", "--trust-model", "always",
                  "-r", "alice@example.org", input=b"secret").stdout
    raw = (
        b"From: doc@sender.example\r\nTo: alice@example.org\r\nSubject: [secure] x\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";"
        b" boundary=\"b\"\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + armored + b"--b--\r\n"
    )

    outcome = process_message(
        raw,
        queue_id="Q9",
        sender="doc@sender.example",
        recipients=["alice@example.org"],
        verdict=None,
        tls={},
        context=_context(pki, gpg_world),
    )

    (version,) = outcome.versions
    assert outcome.decisions[0].method is Method.PRE_ENCRYPTED
    assert version.group.kind is VersionKind.CLEARTEXT
    assert version.raw.count(b"BEGIN PGP MESSAGE") == 1
    assert RawMessage.parse(version.raw).values("Subject") == ["x"]


def _pgp_mime_message(armored: bytes, preamble: bytes = b"") -> bytes:
    return (
        b"From: doc@sender.example\r\nTo: alice@example.org\r\nSubject: Results\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";"
        b" boundary=\"b\"\r\n\r\n" + preamble + b"--b\r\nContent-Type: application/pgp-encrypted\r\n\r\n"
        b"Version: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n" + armored + b"--b--\r\n"
    )


def _gpg_armored(world: GpgWorld) -> bytes:
    return gpg(world.recipient_home, "--armor", "--encrypt", "--trust-model", "always",
               "-r", world.fingerprints["alice"], input=b"secret").stdout


def test_already_encrypted_reason_recorded(pki: Pki, gpg_world: GpgWorld) -> None:
    outcome = process_message(
        _pgp_mime_message(_gpg_armored(gpg_world)),
        queue_id="Q9a",
        sender="doc@sender.example",
        recipients=["alice@example.org"],
        verdict=Verdict(True, rule="unscanned_part", categories={}),
        tls={},
        context=_context(pki, gpg_world),
    )

    expected = "PGP/MIME with 1 public-key session key packet, integrity-protected data packet"
    assert outcome.decisions[0].method is Method.PRE_ENCRYPTED
    assert outcome.decisions[0].reason == f"already encrypted by the sender ({expected})"
    assert outcome.record.sender_encrypted
    assert outcome.record.encryption_check == "pgp-mime"
    assert outcome.record.to_dict()["sender_encryption"]["reason"] == expected


def test_text_beside_encryption_encrypted_again(pki: Pki, gpg_world: GpgWorld) -> None:
    """A preamble with readable text makes the message count as not encrypted, so it is
    routed as its class requires: encrypted again to Alice's key."""
    raw = _pgp_mime_message(_gpg_armored(gpg_world), preamble=b"Patient Jane Roe, MRN 445566\r\n")

    outcome = process_message(
        raw,
        queue_id="Q9b",
        sender="doc@sender.example",
        recipients=["alice@example.org"],
        verdict=Verdict(True),
        tls={},
        context=_context(pki, gpg_world),
    )

    (version,) = outcome.versions
    assert outcome.decisions[0].method is Method.PGP
    assert not outcome.record.sender_encrypted
    assert outcome.record.encryption_check == "notice-text"
    assert b"Jane Roe" not in version.raw
    assert b"Patient Jane Roe" in gpg_decrypt(gpg_world, ARMOR_RE.search(version.raw).group())


def test_findings_outside_encryption_encrypted_again(pki: Pki, gpg_world: GpgWorld) -> None:
    """Detection cannot read ciphertext, so its findings in a well-formed encrypted
    message come from the Subject and the message is protected again."""
    outcome = process_message(
        _pgp_mime_message(_gpg_armored(gpg_world)),
        queue_id="Q9c",
        sender="doc@sender.example",
        recipients=["alice@example.org"],
        verdict=Verdict(True, categories={"patient_name": 1, "mrn": 1}),
        tls={},
        context=_context(pki, gpg_world),
    )

    assert outcome.decisions[0].method is Method.PGP
    assert outcome.record.encryption_check == "findings-outside"
    assert RawMessage.parse(outcome.versions[0].raw).values("Subject") == ["Encrypted message"]


def test_health_words_outside_encryption_still_count(pki: Pki, gpg_world: GpgWorld) -> None:
    """Health words in the Subject of encrypted mail make it no more sensitive than
    the same Subject on plain mail, so the sender's encryption still counts."""
    outcome = process_message(
        _pgp_mime_message(_gpg_armored(gpg_world)),
        queue_id="Q9d",
        sender="doc@sender.example",
        recipients=["alice@example.org"],
        # The encrypted part cannot be scanned, which alone makes the message sensitive.
        verdict=Verdict(True, rule="unscanned_part", categories={"lab_result": 1}),
        tls={},
        context=_context(pki, gpg_world),
    )

    assert outcome.decisions[0].method is Method.PRE_ENCRYPTED
    assert outcome.record.sender_encrypted


def test_identifier_outside_encryption_encrypted_again(pki: Pki, gpg_world: GpgWorld) -> None:
    """A patient identifier in the Subject, such as an MRN, ties a patient to the
    encrypted part, although no rule fires on the Subject alone."""
    outcome = process_message(
        _pgp_mime_message(_gpg_armored(gpg_world)),
        queue_id="Q9e",
        sender="doc@sender.example",
        recipients=["alice@example.org"],
        verdict=Verdict(True, rule="unscanned_part", categories={"mrn": 1}),
        tls={},
        context=_context(pki, gpg_world),
    )

    assert outcome.decisions[0].method is Method.PGP
    assert not outcome.record.sender_encrypted
    assert outcome.record.encryption_check == "findings-outside"
    assert "patient identifier" in outcome.record.encryption_reason
    assert RawMessage.parse(outcome.versions[0].raw).values("Subject") == ["Encrypted message"]


def test_build_context_identifier_categories(pki: Pki, gpg_world: GpgWorld) -> None:
    from postveil.config import parse_config
    from postveil.crypto.pipeline import build_context

    config = parse_config(
        (
            f"smime: {{certificate_dir: {pki.cert_dir}, trust_store: {pki.trust_store}}}\n"
            f"pgp: {{gnupg_home: {gpg_world.postveil_home}}}\n"
            "detection:\n"
            "  custom_identifiers:\n"
            "    - {name: ward_code, pattern: 'W[0-9]{4}'}\n"
            "    - {name: mrn, pattern: 'M[0-9]{6}', kind: health}\n"
        ).encode()
    )

    categories = build_context(config).identifier_categories

    assert "ward_code" in categories
    assert "patient_name" in categories
    assert "ssn" in categories
    assert "mrn" not in categories
    assert "lab_result" not in categories


def test_record_carries_fingerprints(pki: Pki, gpg_world: GpgWorld) -> None:
    outcome = process_message(
        _message("Lab", "alice@example.org"),
        queue_id="Q10",
        sender="doc@sender.example",
        recipients=["alice@example.org"],
        verdict=Verdict(True, categories={"mrn": 3}),
        tls={},
        context=_context(pki, gpg_world),
    )

    data = outcome.record.to_dict()
    assert data["queue_id"] == "Q10"
    assert data["message_class"] == "sensitive"
    assert data["recipients"][0]["method"] == "pgp"
    assert data["recipients"][0]["fingerprint"] == gpg_world.fingerprints["alice"]
    assert data["detection"]["categories"] == {"mrn": 3}
    assert "unauffällig" not in str(data)


def test_build_context_with_signing(pki: Pki, gpg_world: GpgWorld, tmp_path: Path) -> None:
    from postveil.config import parse_config
    from postveil.crypto.pipeline import build_context

    config = parse_config(
        (
            f"smime: {{certificate_dir: {pki.cert_dir}, trust_store: {pki.trust_store}, sign: true,"
            f" signing_certificate: {pki.signer.cert_path}, signing_key: {pki.signer.key_path}}}\n"
            f"pgp: {{gnupg_home: {gpg_world.postveil_home}}}\n"
        ).encode()
    )
    context = build_context(config)
    outcome = process_message(
        _message("[smime] Lab", "alice@example.org"),
        queue_id="Q11",
        sender="doc@sender.example",
        recipients=["alice@example.org"],
        verdict=None,
        tls={},
        context=context,
    )

    inner = openssl_decrypt(outcome.versions[0].raw, pki.alice, tmp_path)
    assert inner.startswith(b"Content-Type: multipart/signed;")
    assert b"Subject: Lab\r\n" in inner


def test_ec_certificate_falls_through_to_portal(pki: Pki, gpg_world: GpgWorld) -> None:
    routing = RoutingSection(methods={"forced_smime": ["smime", "portal"]})
    outcome = process_message(
        _message("[smime] Lab", "ec@example.org"),
        queue_id="Q12",
        sender="doc@sender.example",
        recipients=["ec@example.org"],
        verdict=None,
        tls={},
        context=_context(pki, gpg_world, routing=routing, portal="intake@portal.example"),
    )

    (decision,) = outcome.decisions
    assert decision.method is Method.PORTAL
    assert "key is EC" in decision.skipped[0]
    assert outcome.versions[0].envelope_recipients == ("intake@portal.example",)


def test_concurrent_messages_from_threads(pki: Pki, gpg_world: GpgWorld) -> None:
    from concurrent.futures import ThreadPoolExecutor

    context = _context(pki, gpg_world)

    def one(index: int) -> list[str]:
        outcome = process_message(
            _message("[secure] Lab", "alice@example.org, carol@example.org"),
            queue_id=f"C{index}",
            sender="doc@sender.example",
            recipients=["alice@example.org", "carol@example.org"],
            verdict=None,
            tls={},
            context=context,
        )
        return sorted(v.group.kind.value for v in outcome.versions)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(24)))

    assert results == [["pgp", "smime"]] * 24
