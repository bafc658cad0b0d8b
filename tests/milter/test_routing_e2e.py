"""Routing and encryption end to end: private Postfix, postveil-policyd, postveil-milter,
real GnuPG and OpenSSL, and one SMTP sink per recipient domain."""

from __future__ import annotations

import base64
import json
import shutil
import smtplib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from postveil.crypto.mime import RawMessage, decode_text
from postveil.harness.postfix import PrivatePostfix
from postveil.harness.pytest_plugin import postfix_settings, unique_domain
from postveil.harness.recipients import PgpRecipient, SmimeRecipient
from postveil.harness.smtp import ReceivedMessage
from postveil.harness.world import TestDomain, World
from tests import planted
from tests.crypto.crypto_messages import EXPECTED_SUBJECT, SHAPES

pytestmark = pytest.mark.postfix

SENDER = "doctor@clinic.test"
OUTER_SUBJECT = "Encrypted message"


@dataclass
class Scene:
    world: World
    postfix: PrivatePostfix
    enforce: TestDomain
    plain: TestDomain
    portal: TestDomain
    pgp: PgpRecipient
    pgp_bcc: PgpRecipient
    smime: SmimeRecipient

    @property
    def portal_intake(self) -> str:
        return f"intake@{self.portal.name}"


@pytest.fixture(scope="module")
def scene(world: World, postfix: PrivatePostfix) -> Iterator[Scene]:
    enforce = world.add_domain(unique_domain("enforce"), mta_sts="enforce")
    plain = world.add_domain(unique_domain("notls"), tls="none")
    portal = world.add_domain(unique_domain("portal"))
    pgp = world.add_pgp_recipient(f"bob@{plain.name}")
    pgp_bcc = world.add_pgp_recipient(f"hidden@{plain.name}")
    smime = world.add_smime_recipient(f"carol@{plain.name}")
    config = world.base_config()
    config["portal"] = {"intake_address": f"intake@{portal.name}"}
    config["routing"] = {"outer_subject": OUTER_SUBJECT}
    config_path = world.write_config(config, "routing-e2e.yaml")
    world.start_policyd(config_path)
    world.start_milter(config_path)
    try:
        yield Scene(world, postfix, enforce, plain, portal, pgp, pgp_bcc, smime)
    finally:
        world.stop_daemon("milter")
        world.stop_daemon("policyd")


def sensitive_message(to: list[str], subject: str, *, cc: list[str] | None = None, message_id: str) -> bytes:
    headers = f"From: Dr. Who <{SENDER}>\r\nTo: {', '.join(to)}\r\n"
    if cc:
        headers += f"Cc: {', '.join(cc)}\r\n"
    headers += (
        f"Subject: {subject}\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    body = (
        f"Patient {planted.PATIENT_NAME}, {planted.MRN}, DOB {planted.DATE_OF_BIRTH}.\r\n"
        f"Diagnosis {planted.DIAGNOSIS_CODE}, HbA1c 9.1%. SSN {planted.SSN}.\r\n"
    )
    return (headers + body).encode()


def copies_for(domain: TestDomain, recipient: str, message_id: str, count: int = 1, timeout: float = 30) -> list[ReceivedMessage]:
    """Wait for ``count`` copies carrying ``message_id`` addressed to ``recipient``."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            m for m in domain.sink.messages
            if recipient in m.rcpt_tos and message_id.encode() in m.data
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def header(message: bytes, name: str) -> str | None:
    value = RawMessage.parse(message).first_value(name)
    return decode_text(value) if value is not None else None


def test_three_recipients_each_get_right_form(scene: Scene) -> None:
    tls_rcpt = f"dr.lee@{scene.enforce.name}"
    neither = f"patient@{scene.plain.name}"
    recipients = [tls_rcpt, scene.pgp.address, neither]
    message_id = "three-forms@clinic.test"

    result = scene.postfix.send(
        sensitive_message(recipients, "Lab results", message_id=message_id), SENDER, recipients
    )
    assert result.code == 250, result.text

    tls_copies = copies_for(scene.enforce, tls_rcpt, message_id)
    pgp_copies = copies_for(scene.plain, scene.pgp.address, message_id)
    portal_copies = copies_for(scene.portal, scene.portal_intake, message_id)
    time.sleep(1.0)  # give any duplicate time to arrive

    assert len(copies_for(scene.enforce, tls_rcpt, message_id, timeout=0)) == 1
    assert len(copies_for(scene.plain, scene.pgp.address, message_id, timeout=0)) == 1
    assert len(copies_for(scene.portal, scene.portal_intake, message_id, timeout=0)) == 1
    assert copies_for(scene.plain, neither, message_id, timeout=0) == []

    tls_copy = tls_copies[0]
    assert tls_copy.tls_version in ("TLSv1.2", "TLSv1.3")
    assert planted.SSN.encode() in tls_copy.data

    pgp_copy = pgp_copies[0]
    assert pgp_copy.rcpt_tos == (scene.pgp.address,)
    assert planted.SSN.encode() not in pgp_copy.data
    assert planted.SSN.encode() in scene.pgp.decrypt(pgp_copy.data)

    portal_copy = portal_copies[0]
    assert portal_copy.rcpt_tos == (scene.portal_intake,)
    assert header(portal_copy.data, "X-Postveil-Portal-Recipient") == neither


def test_bcc_pgp_recipient_gets_own_copy(scene: Scene) -> None:
    message_id = "bcc-copy@clinic.test"
    envelope = [scene.pgp.address, scene.pgp_bcc.address]

    result = scene.postfix.send(
        sensitive_message([scene.pgp.address], "[pgp] Referral", message_id=message_id), SENDER, envelope
    )
    assert result.code == 250, result.text

    visible = copies_for(scene.plain, scene.pgp.address, message_id)
    hidden = copies_for(scene.plain, scene.pgp_bcc.address, message_id)

    assert len(visible) == 1
    assert len(hidden) == 1
    assert visible[0].rcpt_tos == (scene.pgp.address,)
    assert hidden[0].rcpt_tos == (scene.pgp_bcc.address,)
    assert scene.pgp.key_ids_in(visible[0].data) == scene.pgp.encryption_key_ids
    assert scene.pgp_bcc.key_ids_in(hidden[0].data) == scene.pgp_bcc.encryption_key_ids
    assert scene.pgp.decrypt(visible[0].data)
    assert scene.pgp_bcc.decrypt(hidden[0].data)
    with pytest.raises(RuntimeError):
        scene.pgp_bcc.decrypt(visible[0].data)
    assert scene.pgp_bcc.address.encode() not in visible[0].data


def test_tag_removed_and_subject_neutral(scene: Scene) -> None:
    message_id = "tagged@clinic.test"
    recipient = scene.smime.address

    result = scene.postfix.send(
        sensitive_message([recipient], "[secure] Referral for review", message_id=message_id), SENDER, [recipient]
    )
    assert result.code == 250, result.text

    received = copies_for(scene.plain, recipient, message_id)[0]
    inner = scene.smime.decrypt(received.data)

    assert header(received.data, "Subject") == OUTER_SUBJECT
    assert b"[secure]" not in received.data
    assert header(inner, "Subject") == "Referral for review"
    assert planted.MRN.encode() in inner


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("method", ["pgp", "smime"])
def test_content_shapes_survive_decryption(scene: Scene, shape: str, method: str) -> None:
    recipient = scene.pgp if method == "pgp" else scene.smime
    message_id = f"shape-{shape}-{method}@clinic.test"
    original = SHAPES[shape]
    original = original.replace(b"<shape@sender.example>", f"<{message_id}>".encode())
    original = original.replace(b"To: Alice <alice@example.org>", f"To: <{recipient.address}>".encode())
    original = _force_method(original, method)

    result = scene.postfix.send(original, SENDER, [recipient.address], smtputf8=not original.isascii())
    assert result.code == 250, result.text

    received = copies_for(scene.plain, recipient.address, message_id)[0]
    inner = recipient.decrypt(received.data)

    assert RawMessage.parse(inner).body.rstrip(b"\r\n") == RawMessage.parse(original).body.rstrip(b"\r\n")
    assert header(inner, "Subject") == EXPECTED_SUBJECT[shape]
    assert header(received.data, "Subject") == OUTER_SUBJECT


def _force_method(message: bytes, method: str) -> bytes:
    """Add a ``[pgp]`` or ``[smime]`` tag so the shape goes to that method."""
    parsed = RawMessage.parse(message)
    subject = parsed.get_all("Subject")[0]
    tagged = subject.raw.replace(b"Subject: ", f"Subject: [{method}] ".encode(), 1)
    return message.replace(subject.raw, tagged, 1)


def test_broken_gnupg_home_tempfails(scene: Scene) -> None:
    message_id = "broken-gpg@clinic.test"
    home = scene.world.state_dir / "gnupg"
    moved = home.with_name("gnupg.moved")
    shutil.move(home, moved)
    try:
        result = scene.postfix.send(
            sensitive_message([scene.pgp.address], "[pgp] Broken keyring", message_id=message_id),
            SENDER,
            [scene.pgp.address],
        )
    finally:
        shutil.move(moved, home)

    assert result.code == 451
    assert copies_for(scene.plain, scene.pgp.address, message_id, timeout=2) == []
    # The deferral is in the audit trail, with the error's class and no message text.
    lines = (scene.world.state_dir / "audit" / "audit.jsonl").read_text().splitlines()
    deferred = [record for record in map(json.loads, lines)
                if record["kind"] == "message" and record["action"] == "tempfail"
                and record["recipients"][0]["address"] == scene.pgp.address]
    assert deferred
    assert deferred[-1]["recipients"][0]["method"] == "tempfail"
    assert deferred[-1]["recipients"][0]["reason"].startswith("temporary failure at end of message: ")
    assert "Broken keyring" not in json.dumps(deferred[-1])


def test_unreadable_certificate_dir_tempfails(scene: Scene) -> None:
    message_id = "broken-smime@clinic.test"
    directory = scene.world.state_dir / "smime"
    moved = directory.with_name("smime.moved")
    shutil.move(directory, moved)
    try:
        result = scene.postfix.send(
            sensitive_message([scene.smime.address], "[smime] Broken store", message_id=message_id),
            SENDER,
            [scene.smime.address],
        )
    finally:
        shutil.move(moved, directory)

    assert result.code == 451
    assert copies_for(scene.plain, scene.smime.address, message_id, timeout=2) == []


def test_rejected_recipients_audited_as_rejected(scene: Scene) -> None:
    import json

    message_id = "rejected-audit@clinic.test"
    recipient = f"nokey@{scene.plain.name}"

    result = scene.postfix.send(
        sensitive_message([recipient], "[pgp] No key for this one", message_id=message_id), SENDER, [recipient]
    )

    audit_file = scene.world.state_dir / "audit" / "audit.jsonl"
    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    record = next(r for r in records if r.get("message_id") == f"<{message_id}>")
    assert result.code == 550
    assert record["action"] == "reject"
    assert record["recipients"][0]["method"] == "reject"
    assert record["recipients"][0]["fingerprint"] is None
    assert "class:forced_pgp" in record["tags"]
    assert "subject:pgp" in record["tags"]


def test_reject_reply_has_plain_reason(scene: Scene) -> None:
    message_id = "rejected-reason@clinic.test"
    recipient = f"nokey@{scene.plain.name}"

    result = scene.postfix.send(
        sensitive_message([recipient], "[ pgp ] No key for this one", message_id=message_id), SENDER, [recipient]
    )

    assert result.code == 550
    assert "5.7.1" in result.text
    assert recipient in result.text
    assert "Reason: no usable PGP encryption key is on file for this address" in result.text
    assert scene.pgp.fingerprint not in result.text


def test_source_routed_recipient_never_gets_cleartext(scene: Scene) -> None:
    """Postfix stores and delivers a source-routed recipient without its route, so the
    milter must route and remove it in that form too."""
    recipient = f"patient@{scene.plain.name}"
    message_id = "source-route@clinic.test"
    message = sensitive_message([recipient], "Lab results", message_id=message_id)

    # smtplib's rcpt() would rewrite the route, because email.utils.parseaddr drops it.
    with smtplib.SMTP("127.0.0.1", scene.postfix.port, timeout=60) as client:
        client.ehlo("client.postveil-harness.test")
        assert client.mail(SENDER)[0] == 250
        assert client.docmd(f"RCPT TO:<@{scene.enforce.name}:{recipient}>")[0] == 250
        code, reply = client.data(message)
    assert code == 250, reply

    portal_copies = copies_for(scene.portal, scene.portal_intake, message_id)
    time.sleep(1.0)  # give a copy to the recipient's own server time to arrive

    assert copies_for(scene.plain, recipient, message_id, timeout=0) == []
    assert copies_for(scene.enforce, recipient, message_id, timeout=0) == []
    assert len(portal_copies) == 1
    assert header(portal_copies[0].data, "X-Postveil-Portal-Recipient") == recipient


def test_thread_topic_moves_inside(scene: Scene) -> None:
    """Outlook repeats the Subject in Thread-Topic, so an encrypted copy must not show it."""
    message_id = "thread-topic@clinic.test"
    recipient = scene.pgp.address
    subject = f"Results for {planted.PATIENT_NAME}"
    message = sensitive_message([recipient], f"[secure] {subject}", message_id=message_id)
    message = message.replace(b"Message-ID:", f"Thread-Topic: {subject}\r\nMessage-ID:".encode(), 1)

    result = scene.postfix.send(message, SENDER, [recipient])
    assert result.code == 250, result.text

    received = copies_for(scene.plain, recipient, message_id)[0]
    inner = scene.pgp.decrypt(received.data)

    assert header(received.data, "Thread-Topic") is None
    assert planted.PATIENT_NAME.encode() not in received.data
    assert header(inner, "Thread-Topic") == subject
    assert header(inner, "Subject") == subject


def test_unlisted_headers_move_inside(scene: Scene) -> None:
    """Headers off the allowlist, such as one naming the patient, travel only inside the
    encrypted copies: the PGP copy changed in place and the S/MIME copy re-injected."""
    message_id = "outer-headers@clinic.test"
    recipients = [scene.pgp.address, scene.smime.address]
    patient = f"{planted.PATIENT_NAME} {planted.MRN}"
    message = sensitive_message(recipients, "[secure] Lab results", message_id=message_id)
    extra = (
        f"X-Patient: {patient}\r\nKeywords: {planted.DIAGNOSIS_CODE}\r\n"
        f"Comments: follow-up,\r\n {planted.PATIENT_NAME}\r\nx-patient: second\r\n"
        "List-Id: <results.clinic.test>\r\n"
    )
    message = message.replace(b"Message-ID:", f"{extra}Message-ID:".encode(), 1)

    result = scene.postfix.send(message, SENDER, recipients)
    assert result.code == 250, result.text

    pgp_copy = copies_for(scene.plain, scene.pgp.address, message_id)[0]
    smime_copy = copies_for(scene.plain, scene.smime.address, message_id)[0]
    for received, inner in (
        (pgp_copy.data, scene.pgp.decrypt(pgp_copy.data)),
        (smime_copy.data, scene.smime.decrypt(smime_copy.data)),
    ):
        outer = RawMessage.parse(received)
        assert outer.get_all("X-Patient") == []
        assert outer.get_all("Keywords") == []
        assert outer.get_all("Comments") == []
        assert outer.values("List-Id") == ["<results.clinic.test>"]
        assert planted.PATIENT_NAME.encode() not in received
        assert planted.MRN.encode() not in received
        assert planted.DIAGNOSIS_CODE.encode() not in received

        inside = RawMessage.parse(inner)
        assert inside.values("X-Patient") == [patient, "second"]
        assert inside.values("Keywords") == [planted.DIAGNOSIS_CODE]
        assert [f.raw for f in inside.get_all("Comments")] == [
            f"Comments: follow-up,\r\n {planted.PATIENT_NAME}\r\n".encode()
        ]
        assert inside.values("Subject") == ["Lab results"]


def test_tag_in_second_subject_counts(scene: Scene) -> None:
    """A message may carry two Subject fields, and a mail program may show either one, so
    a tag in any of them protects the message."""
    message_id = "second-subject@clinic.test"
    recipient = scene.smime.address
    message = (
        f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: Referral\r\n"
        f"Subject: [secure] Referral\r\nMessage-ID: <{message_id}>\r\n\r\n"
        "See you on Monday.\r\n"
    ).encode()

    result = scene.postfix.send(message, SENDER, [recipient])
    assert result.code == 250, result.text

    received = copies_for(scene.plain, recipient, message_id)[0]
    inner = scene.smime.decrypt(received.data)

    assert RawMessage.parse(received.data).values("Subject") == [OUTER_SUBJECT]
    assert b"See you on Monday." not in received.data
    assert b"[secure]" not in received.data
    assert RawMessage.parse(inner).values("Subject") == ["Referral"]
    assert b"See you on Monday." in inner


def test_armor_then_text_not_pre_encrypted(scene: Scene) -> None:
    """A text body that starts with a PGP block but goes on in plain text is not mail
    the sender encrypted, so it gets protection like any other."""
    message_id = "armor-then-text@clinic.test"
    recipient = f"patient@{scene.plain.name}"
    message = sensitive_message([recipient], "Lab results", message_id=message_id)
    head, _, body = message.partition(b"\r\n\r\n")
    armor = b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0x5Y2Fi\r\n-----END PGP MESSAGE-----\r\n\r\n"
    message = head + b"\r\n\r\n" + armor + body

    result = scene.postfix.send(message, SENDER, [recipient])
    assert result.code == 250, result.text

    portal_copies = copies_for(scene.portal, scene.portal_intake, message_id)
    time.sleep(1.0)  # give a copy to the recipient's own server time to arrive

    assert copies_for(scene.plain, recipient, message_id, timeout=0) == []
    assert len(portal_copies) == 1


@pytest.mark.parametrize("rewrite", ["source route", "canonical_maps"])
def test_sendmail_recipient_rewritten_never_gets_cleartext(scene: Scene, rewrite: str) -> None:
    """Mail from sendmail(1) reaches the milter with recipients after Postfix's address
    rewriting, which smfi_delrcpt does not match, so no recipient may depend on it."""
    tls_recipient = f"dr.lee@{scene.enforce.name}"
    recipient = f"patient@{scene.plain.name}"
    message_id = f"sendmail-{rewrite.replace(' ', '-')}@clinic.test"
    settings = {"non_smtpd_milters": f"unix:{scene.world.milter_socket}"}
    if rewrite == "source route":
        submitted = f"@{scene.enforce.name}:{recipient}"
    else:
        submitted = f"patient@{scene.enforce.name}"
        settings["canonical_maps"] = f"inline:{{{submitted}={recipient}}}"
    message = sensitive_message([tls_recipient, recipient], "Lab results", message_id=message_id)

    with postfix_settings(scene.postfix, **settings):
        sendmail = subprocess.run(
            ["/usr/sbin/sendmail", "-C", str(scene.postfix.config_dir), "-f", SENDER,
             tls_recipient, submitted],
            input=message, capture_output=True, timeout=60, check=False,
        )
        assert sendmail.returncode == 0, sendmail.stderr
        tls_copies = copies_for(scene.enforce, tls_recipient, message_id)
        portal_copies = copies_for(scene.portal, scene.portal_intake, message_id)
        time.sleep(1.0)  # give a copy to the patient's own server time to arrive

    assert copies_for(scene.plain, recipient, message_id, timeout=0) == []
    assert copies_for(scene.enforce, submitted, message_id, timeout=0) == []
    assert len(tls_copies) == 1
    assert tls_copies[0].rcpt_tos == (tls_recipient,)
    assert len(portal_copies) == 1
    assert header(portal_copies[0].data, "X-Postveil-Portal-Recipient") == recipient


# Mail the sender encrypted: genuine encryption leaves unchanged, text dressed up as
# encryption is protected like any other message.

_PHI_LINE = f"Patient {planted.PATIENT_NAME}, {planted.MRN}".encode()


def _armored_for(recipient: PgpRecipient, data: bytes) -> bytes:
    result = subprocess.run(
        ["gpg", "--homedir", str(recipient.home), "--batch", "--armor", "--trust-model", "always",
         "--auto-key-locate", "local", "--encrypt", "-r", recipient.fingerprint],
        input=data, capture_output=True, timeout=60, check=True,
    )
    return result.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _pgp_mime(armored: bytes, preamble: bytes = b"") -> bytes:
    return (
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b1"\r\n\r\n'
        + preamble + b"--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" + armored + b"\r\n--b1--\r\n"
    )


def _sender_encrypted(recipient: str, message_id: str, extra_headers: bytes, content: bytes) -> bytes:
    head = (
        f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: [secure] Results\r\n"
        f"Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
    ).encode()
    return head + extra_headers + content


def _audit_tags(scene: Scene, message_id: str) -> list[str]:
    audit_file = scene.world.state_dir / "audit" / "audit.jsonl"
    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    return next(r for r in records if r.get("message_id") == f"<{message_id}>")["tags"]


def test_sender_encrypted_pgp_delivered_unchanged(scene: Scene) -> None:
    message_id = "sender-encrypted-pgp@clinic.test"
    armored = _armored_for(scene.pgp, b"Content-Type: text/plain\r\n\r\n" + _PHI_LINE + b"\r\n")
    message = _sender_encrypted(scene.pgp.address, message_id, b"", _pgp_mime(armored))

    result = scene.postfix.send(message, SENDER, [scene.pgp.address])
    assert result.code == 250, result.text

    received = copies_for(scene.plain, scene.pgp.address, message_id)[0].data
    assert armored in received
    assert received.count(b"-----BEGIN PGP MESSAGE-----") == 1
    assert RawMessage.parse(received).values("Subject") == ["Results"]
    assert _PHI_LINE in scene.pgp.decrypt(received)
    assert "sender-encryption:counted:pgp-mime" in _audit_tags(scene, message_id)


def test_sender_encrypted_smime_delivered_unchanged(scene: Scene) -> None:
    message_id = "sender-encrypted-smime@clinic.test"
    recipient = scene.smime.address
    result = subprocess.run(
        ["openssl", "cms", "-encrypt", "-aes256", "-recip", str(scene.smime.cert_path)],
        input=b"Content-Type: text/plain\r\n\r\n" + _PHI_LINE + b"\r\n",
        capture_output=True, timeout=60, check=True,
    )
    encrypted = result.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = (
        f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: [secure] Results\r\n"
        f"Message-ID: <{message_id}>\r\n"
    ).encode()

    sent = scene.postfix.send(head + encrypted, SENDER, [recipient])
    assert sent.code == 250, sent.text

    received = copies_for(scene.plain, recipient, message_id)[0].data
    body = encrypted.partition(b"\r\n\r\n")[2]
    assert body in received
    assert RawMessage.parse(received).values("Subject") == ["Results"]
    assert _PHI_LINE in scene.smime.decrypt(received)
    assert "sender-encryption:counted:smime" in _audit_tags(scene, message_id)


def _fake_packet_armor() -> bytes:
    """An armored "message" whose only packet contains the text itself."""
    body = base64.b64encode(b"\xd2\xff" + (len(_PHI_LINE) + 1).to_bytes(4, "big") + b"\x01" + _PHI_LINE)
    return b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + body + b"\r\n-----END PGP MESSAGE-----\r\n"


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("preamble", "notice-text"),
        ("outer-header", "outer-header"),
        ("fake-packet", "packet-sequence"),
        ("armor-comment", "armor-header"),
    ],
)
def test_text_dressed_as_pgp_encrypted_again(scene: Scene, case: str, code: str) -> None:
    """Each message carries readable text outside real encryption, or in place of it:
    it is encrypted to the recipient's key like any message of its class."""
    message_id = f"dressed-{case}@clinic.test"
    recipient = scene.pgp.address
    genuine = _armored_for(scene.pgp, b"Content-Type: text/plain\r\n\r\nHello\r\n")
    extra_headers = b""
    if case == "preamble":
        content = _pgp_mime(genuine, preamble=_PHI_LINE + b"\r\n")
    elif case == "outer-header":
        extra_headers = b"X-Patient: " + _PHI_LINE + b"\r\n"
        content = _pgp_mime(genuine)
    elif case == "fake-packet":
        content = _pgp_mime(_fake_packet_armor())
    else:
        content = _pgp_mime(genuine.replace(b"-----\r\n", b"-----\r\nComment: " + _PHI_LINE + b"\r\n", 1))
    message = _sender_encrypted(recipient, message_id, extra_headers, content)
    visible = _fake_packet_armor().split(b"\r\n")[2] if case == "fake-packet" else _PHI_LINE

    result = scene.postfix.send(message, SENDER, [recipient])
    assert result.code == 250, result.text

    received = copies_for(scene.plain, recipient, message_id)[0].data
    assert visible not in received
    assert RawMessage.parse(received).values("Subject") == [OUTER_SUBJECT]
    assert visible in scene.pgp.decrypt(received)
    assert f"sender-encryption:not-counted:{code}" in _audit_tags(scene, message_id)


def test_smime_data_not_enveloped_encrypted_again(scene: Scene) -> None:
    """An S/MIME body labelled enveloped-data whose CMS type is Data carries the text
    itself: the S/MIME recipient gets it encrypted by postveil."""
    message_id = "dressed-smime-data@clinic.test"
    recipient = scene.smime.address
    text = b"Content-Type: text/plain\r\n\r\n" + _PHI_LINE + b"\r\n"
    der = (
        b"\x30\x82" + (len(text) + 19).to_bytes(2, "big") + bytes.fromhex("06092a864886f70d010701")
        + b"\xa0\x82" + (len(text) + 4).to_bytes(2, "big") + b"\x04\x82" + len(text).to_bytes(2, "big") + text
    )
    encoded = base64.encodebytes(der).replace(b"\n", b"\r\n")
    content = (
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded
    )
    message = _sender_encrypted(recipient, message_id, b"", content)

    result = scene.postfix.send(message, SENDER, [recipient])
    assert result.code == 250, result.text

    received = copies_for(scene.plain, recipient, message_id)[0].data
    assert encoded.split(b"\r\n")[0] not in received
    assert encoded.split(b"\r\n")[0] in scene.smime.decrypt(received)
    assert "sender-encryption:not-counted:cms-content-type" in _audit_tags(scene, message_id)
