"""Which headers stay outside an encrypted copy and which move into the encrypted part.

The split is checked as a table of single fields, then the inner entity for order and
raw bytes, then whole versions encrypted with real OpenSSL and GnuPG.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from crypto_fixtures import GpgWorld, Pki, gpg_decrypt, openssl_decrypt

from postveil.config.portal import PortalSection
from postveil.config.routing import RoutingSection
from postveil.crypto import (
    CertificateStore,
    PgpKeyring,
    RawMessage,
    RenderContext,
    build_inner_entity,
    milter_operations,
    read_triggers,
    render_version,
)
from postveil.crypto.protect import OUTER_HEADERS, split_headers
from postveil.routing.plan import RecipientGroup, VersionKind
from tests import planted

ROUTING = RoutingSection()
ARMOR_RE = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----\r?\n", re.DOTALL)

BASE = (
    b"From: doc@sender.example\r\n"
    b"To: a@example.org\r\n"
    b"Subject: [secure] Results\r\n"
    b"Message-ID: <base@sender.example>\r\n"
)
BODY = b"\r\nbody\r\n"
PATIENT = f"{planted.PATIENT_NAME} {planted.MRN}".encode()

# One field added to BASE, and where the split must put it.
SPLIT_CASES = [
    (
        "received",
        b"Received: from a.example by b.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n",
        "outside",
    ),
    (
        "received folded",
        b"Received: from a.example\r\n\tby b.example;\r\n Mon, 1 Jan 2024 00:00:00 +0000\r\n",
        "outside",
    ),
    ("return path", b"Return-Path: <doc@sender.example>\r\n", "outside"),
    ("received spf", b"Received-SPF: pass (b.example: domain of sender.example)\r\n", "outside"),
    ("delivered to", b"Delivered-To: a@example.org\r\n", "outside"),
    ("resent from", b"Resent-From: desk@sender.example\r\n", "outside"),
    ("resent message id", b"Resent-Message-ID: <r@sender.example>\r\n", "outside"),
    ("sender", b"Sender: desk@sender.example\r\n", "outside"),
    ("reply to", b"Reply-To: desk@sender.example\r\n", "outside"),
    ("cc", b"Cc: c@example.org\r\n", "outside"),
    ("date", b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n", "outside"),
    ("in reply to", b"In-Reply-To: <x@example.org>\r\n", "outside"),
    ("references", b"References: <x@example.org> <y@example.org>\r\n", "outside"),
    ("authentication results", b"Authentication-Results: b.example; spf=pass\r\n", "outside"),
    ("auto submitted", b"Auto-Submitted: auto-generated\r\n", "outside"),
    ("precedence", b"Precedence: list\r\n", "outside"),
    ("list id", b"List-Id: <clinic.lists.example>\r\n", "outside"),
    ("autocrypt", b"Autocrypt: addr=a@example.org; keydata=bWFkZS11cA==\r\n", "outside"),
    ("list unsubscribe post", b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", "outside"),
    ("allowed upper case", b"RECEIVED: from a.example by b.example\r\n", "outside"),
    ("allowed mixed case", b"list-ID: <clinic.lists.example>\r\n", "outside"),
    ("patient", b"X-Patient: " + PATIENT + b"\r\n", "moved"),
    ("patient lower case", b"x-patient: " + PATIENT + b"\r\n", "moved"),
    ("patient folded", b"X-Patient: " + PATIENT + b"\r\n\t(ward 4)\r\n", "moved"),
    ("patient utf-8", "X-Patient: José Müller\r\n".encode(), "moved"),
    ("patient latin-1", "X-Patient: José Müller\r\n".encode("latin-1"), "moved"),
    ("keywords", b"Keywords: diabetes, insulin\r\n", "moved"),
    ("comments", b"Comments: follow-up for " + PATIENT + b"\r\n", "moved"),
    ("thread topic", b"Thread-Topic: Results\r\n", "moved"),
    ("content type", b"Content-Type: text/plain; charset=utf-8\r\n", "moved"),
    ("mime version", b"MIME-Version: 1.0\r\n", "moved"),
    ("content disposition", b"content-disposition: inline\r\n", "moved"),
    (
        "dkim signature",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=sender.example; bh=abc=; b=def=\r\n",
        "moved",
    ),
    ("arc seal", b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=sender.example; b=abc=\r\n", "moved"),
    ("resent bcc", b"Resent-Bcc: hidden@example.org\r\n", "moved"),
    ("feedback id", b"Feedback-ID: 1:clinic:mailer\r\n", "moved"),
    ("allowed name with suffix", b"Received-Note: " + PATIENT + b"\r\n", "moved"),
    ("allowed name with prefix", b"X-Received: " + PATIENT + b"\r\n", "moved"),
    ("list-like name", b"List-Patient: " + PATIENT + b"\r\n", "moved"),
    ("message id like name", b"Message-ID-Note: " + PATIENT + b"\r\n", "moved"),
    ("portal recipient", b"X-Postveil-Portal-Recipient: a@example.org\r\n", "moved"),
    ("bcc", b"Bcc: hidden@example.org\r\n", "dropped"),
    ("bcc lower case", b"bcc: hidden@example.org\r\n", "dropped"),
    ("trigger header", b"X-Postveil-Protect: yes\r\n", "dropped"),
]


def _place(split_field: bytes, routing: RoutingSection = ROUTING) -> str:
    message = RawMessage.parse(BASE + split_field + BODY)
    split = split_headers(message, routing)
    places = {
        "outside": [f.raw for f in split.outside],
        "moved": [f.raw for f in split.moved],
        "dropped": [f.raw for f in split.dropped],
    }
    found = [place for place, fields in places.items() if split_field in fields]
    assert len(found) == 1, f"field in {found}"
    return found[0]


@pytest.mark.parametrize(
    ("field", "expected"), [case[1:] for case in SPLIT_CASES], ids=[case[0] for case in SPLIT_CASES]
)
def test_split_places_field(field: bytes, expected: str) -> None:
    assert _place(field) == expected


def test_split_keeps_base_headers_outside() -> None:
    split = split_headers(RawMessage.parse(BASE + BODY), ROUTING)

    assert [f.name for f in split.outside] == ["From", "To", "Subject", "Message-ID"]
    assert split.moved == ()
    assert split.dropped == ()


def test_split_site_allowed_name() -> None:
    routing = RoutingSection(outer_headers_allowed=["feedback-id"])

    assert _place(b"Feedback-ID: 1:clinic:mailer\r\n", routing) == "outside"
    assert _place(b"X-Patient: " + PATIENT + b"\r\n", routing) == "moved"


def test_split_site_list_cannot_free_content() -> None:
    # The validator rejects these names. A section built without validation must still
    # keep the content headers inside.
    routing = RoutingSection.model_construct(
        **{**ROUTING.model_dump(), "outer_headers_allowed": ["Content-Type", "Thread-Topic", "Bcc"]}
    )

    assert _place(b"Content-Type: text/plain\r\n", routing) == "moved"
    assert _place(b"Thread-Topic: Results\r\n", routing) == "moved"
    assert _place(b"Bcc: hidden@example.org\r\n", routing) == "dropped"


def test_split_follows_trigger_header_setting() -> None:
    routing = RoutingSection(trigger_header="X-EHR-Secure")

    assert _place(b"X-EHR-Secure: yes\r\n", routing) == "dropped"
    assert _place(b"X-Postveil-Protect: yes\r\n", routing) == "moved"


def test_split_duplicates_all_move() -> None:
    first = b"X-Patient: " + PATIENT + b"\r\n"
    second = b"x-patient: second\r\n"
    message = RawMessage.parse(
        BASE + first + b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n" + second + BODY
    )
    split = split_headers(message, ROUTING)

    assert [f.raw for f in split.moved] == [first, second]
    assert split.moved_names() == ("X-Patient",)


def test_outer_headers_has_no_content_names() -> None:
    lower = [name.lower() for name in OUTER_HEADERS]

    assert not [name for name in lower if name.startswith("content-") or name == "mime-version"]
    assert "thread-topic" not in lower
    assert "bcc" not in lower
    assert len(lower) == len(set(lower))


ORDER_MESSAGE = (
    b"Received: from a.example by b.example\r\n"
    b"From: doc@sender.example\r\n"
    b"X-Patient: " + PATIENT + b"\r\n"
    b"To: a@example.org\r\n"
    b"Bcc: hidden@example.org\r\n"
    b"Keywords: diabetes,\r\n insulin\r\n"
    b"Subject: [secure] Results\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"X-Postveil-Protect: yes\r\n" + "Comments: für José\r\n".encode() + b"x-patient: second\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"List-Id: <clinic.lists.example>\r\n"
    b"\r\n"
    b"body\r\n"
)


def test_inner_entity_keeps_order_and_bytes() -> None:
    message = RawMessage.parse(ORDER_MESSAGE)
    subject = read_triggers(message, ROUTING).cleaned_subject
    inner = RawMessage.parse(build_inner_entity(message, subject, ROUTING))

    assert [f.raw for f in inner.headers] == [
        b"From: doc@sender.example\r\n",
        b"X-Patient: " + PATIENT + b"\r\n",
        b"To: a@example.org\r\n",
        b"Keywords: diabetes,\r\n insulin\r\n",
        b"Subject: Results\r\n",
        "Comments: für José\r\n".encode(),
        b"x-patient: second\r\n",
        b'Content-Type: text/plain; charset=utf-8;\r\n protected-headers="v1"\r\n',
        b"MIME-Version: 1.0\r\n",
        b"Content-Transfer-Encoding: 8bit\r\n",
    ]
    assert inner.body == b"body\r\n"


def test_inner_entity_unmarked_content_type() -> None:
    routing = RoutingSection(mark_protected_headers=False)
    message = RawMessage.parse(ORDER_MESSAGE)
    inner = RawMessage.parse(build_inner_entity(message, "Results", routing))

    assert [f.raw for f in inner.get_all("Content-Type")] == [
        b"Content-Type: text/plain; charset=utf-8\r\n"
    ]
    assert [f.raw for f in inner.get_all("X-Patient")] == [
        b"X-Patient: " + PATIENT + b"\r\n",
        b"x-patient: second\r\n",
    ]


def test_inner_entity_lf_fields_become_crlf() -> None:
    message = RawMessage.parse(ORDER_MESSAGE.replace(b"\r\n", b"\n"))
    inner = build_inner_entity(message, "Results", ROUTING)

    assert b"Keywords: diabetes,\r\n insulin\r\n" in inner
    assert b"\n" not in inner.replace(b"\r\n", b"")


def test_inner_entity_last_field_without_line_break() -> None:
    message = RawMessage.parse(
        b"From: doc@sender.example\r\nSubject: Results\r\nX-Patient: " + PATIENT
    )
    inner = build_inner_entity(message, None, ROUTING)

    assert inner.startswith(
        b"From: doc@sender.example\r\nSubject: Results\r\nX-Patient: " + PATIENT + b"\r\n"
    )


def test_moved_header_not_copied_twice() -> None:
    # Listing a moved header in inner_headers must not put it inside twice.
    routing = RoutingSection(inner_headers=["From", "X-Patient", "Bcc"])
    message = RawMessage.parse(ORDER_MESSAGE)
    inner = RawMessage.parse(build_inner_entity(message, "Results", routing))

    assert len(inner.get_all("X-Patient")) == 2
    assert inner.get_all("Bcc") == []


def _context(pki: Pki, world: GpgWorld, routing: RoutingSection = ROUTING) -> RenderContext:
    return RenderContext(
        routing=routing,
        portal=PortalSection(intake_address="intake@portal.example"),
        certificates=CertificateStore(str(pki.cert_dir), str(pki.trust_store)),
        keyring=PgpKeyring(str(world.postveil_home)),
    )


def _outer_names(raw: bytes) -> list[str]:
    return [field.name for field in RawMessage.parse(raw).headers]


def test_smime_copy_moves_headers(pki: Pki, gpg_world: GpgWorld, tmp_path: Path) -> None:
    message = RawMessage.parse(ORDER_MESSAGE)
    context = _context(pki, gpg_world)
    fingerprint = context.certificates.lookup("alice@example.org").status.fingerprint
    group = RecipientGroup(VersionKind.SMIME, ("alice@example.org",), (fingerprint,), False)

    version = render_version(message, group, read_triggers(message, ROUTING), context)
    inner = RawMessage.parse(openssl_decrypt(version.raw, pki.alice, tmp_path))

    assert _outer_names(version.raw) == [
        "Received",
        "From",
        "To",
        "Subject",
        "List-Id",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
    ]
    assert PATIENT not in version.raw
    assert b"diabetes" not in version.raw
    assert [f.raw for f in inner.get_all("X-Patient")] == [
        b"X-Patient: " + PATIENT + b"\r\n",
        b"x-patient: second\r\n",
    ]
    assert [f.raw for f in inner.get_all("Keywords")] == [b"Keywords: diabetes,\r\n insulin\r\n"]
    assert [f.raw for f in inner.get_all("Comments")] == ["Comments: für José\r\n".encode()]
    assert inner.get_all("Bcc") == []
    assert inner.get_all("X-Postveil-Protect") == []


def test_pgp_copy_moves_headers(pki: Pki, gpg_world: GpgWorld) -> None:
    message = RawMessage.parse(ORDER_MESSAGE)
    context = _context(pki, gpg_world)
    group = RecipientGroup(
        VersionKind.PGP, ("alice@example.org",), (gpg_world.fingerprints["alice"],), False
    )

    version = render_version(message, group, read_triggers(message, ROUTING), context)
    armored = ARMOR_RE.search(version.raw)
    assert armored is not None
    inner = RawMessage.parse(gpg_decrypt(gpg_world, armored.group(0)))

    assert _outer_names(version.raw) == [
        "Received",
        "From",
        "To",
        "Subject",
        "List-Id",
        "MIME-Version",
        "Content-Type",
    ]
    assert PATIENT not in version.raw
    assert [f.raw for f in inner.get_all("X-Patient")] == [
        b"X-Patient: " + PATIENT + b"\r\n",
        b"x-patient: second\r\n",
    ]
    assert inner.first_value("Subject") == "Results"


def test_pgp_copy_thread_topic_without_tag(pki: Pki, gpg_world: GpgWorld) -> None:
    message = RawMessage.parse(BASE + b"Thread-Topic: [secure] Results\r\n" + BODY)
    context = _context(pki, gpg_world)
    group = RecipientGroup(
        VersionKind.PGP, ("alice@example.org",), (gpg_world.fingerprints["alice"],), False
    )

    version = render_version(message, group, read_triggers(message, ROUTING), context)
    armored = ARMOR_RE.search(version.raw)
    assert armored is not None
    inner = RawMessage.parse(gpg_decrypt(gpg_world, armored.group(0)))

    assert "Thread-Topic" not in _outer_names(version.raw)
    assert inner.values("Thread-Topic") == ["Results"]
    assert inner.first_value("Subject") == "Results"


def test_encrypted_edits_remove_every_moved_field(pki: Pki, gpg_world: GpgWorld) -> None:
    message = RawMessage.parse(ORDER_MESSAGE)
    context = _context(pki, gpg_world)
    group = RecipientGroup(
        VersionKind.PGP, ("alice@example.org",), (gpg_world.fingerprints["alice"],), False
    )

    version = render_version(message, group, read_triggers(message, ROUTING), context)
    deletions = [
        (op.name.lower(), op.index)
        for op in milter_operations(message, version.edits)
        if op.kind == "change" and op.value is None
    ]

    assert sorted(deletions) == sorted(
        [
            ("bcc", 1),
            ("x-postveil-protect", 1),
            ("x-patient", 2),
            ("x-patient", 1),
            ("keywords", 1),
            ("comments", 1),
            ("content-type", 1),
            ("mime-version", 1),
            ("content-transfer-encoding", 1),
        ]
    )


def test_site_allowed_header_stays_outside(pki: Pki, gpg_world: GpgWorld) -> None:
    routing = RoutingSection(outer_headers_allowed=["Feedback-ID"])
    raw = ORDER_MESSAGE.replace(b"List-Id:", b"Feedback-ID: 1:clinic:mailer\r\nList-Id:")
    message = RawMessage.parse(raw)
    context = _context(pki, gpg_world, routing)
    group = RecipientGroup(
        VersionKind.PGP, ("alice@example.org",), (gpg_world.fingerprints["alice"],), False
    )

    version = render_version(message, group, read_triggers(message, routing), context)

    assert b"Feedback-ID: 1:clinic:mailer\r\n" in version.raw
    assert PATIENT not in version.raw


def test_portal_copy_keeps_headers() -> None:
    # Portal copies go over loopback to the portal, which stores them encrypted and
    # shows them only to the recipient, so they keep every header.
    message = RawMessage.parse(ORDER_MESSAGE)
    routing = ROUTING
    context = RenderContext(
        routing=routing, portal=PortalSection(intake_address="intake@portal.example")
    )
    group = RecipientGroup(VersionKind.PORTAL, ("a@example.org",), (), False)

    version = render_version(message, group, read_triggers(message, routing), context)

    assert b"X-Patient: " + PATIENT + b"\r\n" in version.raw
    assert b"Keywords: diabetes,\r\n insulin\r\n" in version.raw
