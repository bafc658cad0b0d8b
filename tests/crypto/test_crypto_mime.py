"""Raw header parsing and detection of mail that is already encrypted.

test_crypto_encrypted.py has the cases of text dressed up as encrypted mail."""

from __future__ import annotations

import base64
import quopri

import pytest
from encrypted_samples import ARMORED, AUTH_ENVELOPED_DER, ENVELOPED_DER, PGP_MIME_TYPE, SIGNED_DER

from postveil.crypto import RawMessage, detect_encryption
from postveil.crypto.mime import to_crlf


def test_parse_keeps_bytes() -> None:
    raw = b"A: 1\r\nB: folded\r\n\tline\r\n\r\nbody\r\n\r\n"
    message = RawMessage.parse(raw)

    assert message.to_bytes() == raw
    assert message.first_value("b") == "folded\tline"
    assert message.body == b"body\r\n\r\n"


def test_parse_lf_only() -> None:
    message = RawMessage.parse(b"A: 1\nB: 2\n\nbody\n")

    assert [h.name for h in message.headers] == ["A", "B"]
    assert message.body == b"body\n"


def test_parse_without_body() -> None:
    message = RawMessage.parse(b"A: 1\r\nB: 2\r\n")

    assert [h.name for h in message.headers] == ["A", "B"]
    assert message.body == b""
    assert not message.had_separator


def test_parse_non_header_line_starts_body() -> None:
    message = RawMessage.parse(b"A: 1\r\nnot a header\r\nmore\r\n")

    assert [h.name for h in message.headers] == ["A"]
    assert message.body == b"not a header\r\nmore\r\n"


@pytest.mark.parametrize(
    ("raw", "fields", "body", "had_separator"),
    [
        (b"", [], b"", False),
        (b"\r\nbody", [], b"body", True),
        (b" folded first\r\n\r\nbody", [], b" folded first\r\n\r\nbody", False),
        (b"A: 1", [b"A: 1"], b"", False),
        (b"A: 1\r\n \r\n\tx\r\n\r\n", [b"A: 1\r\n \r\n\tx\r\n"], b"", True),
        (b"A : 1\nB:2\n\nbody", [b"A : 1\n", b"B:2\n"], b"body", True),
        (b"A: 1\r\n\r\r\nB: 2\r\n", [b"A: 1\r\n"], b"\r\r\nB: 2\r\n", False),
        (b"A: 1\n\r", [b"A: 1\n"], b"\r", False),
        (b"A: 1\r\nFrom x\r\n\r\n", [b"A: 1\r\n"], b"From x\r\n\r\n", False),
    ],
)
def test_parse_edge_cases(raw: bytes, fields: list[bytes], body: bytes, had_separator: bool) -> None:
    message = RawMessage.parse(raw)

    assert [header.raw for header in message.headers] == fields
    assert message.body == body
    assert message.had_separator is had_separator


def test_parse_utf8_header_value() -> None:
    message = RawMessage.parse("Subject: Grüße\r\n\r\n".encode())

    assert message.first_value("Subject") == "Grüße"


def test_to_crlf_keeps_existing_crlf() -> None:
    assert to_crlf(b"a\nb\r\nc\n") == b"a\r\nb\r\nc\r\n"


FIRST_LINE = ARMORED.split(b"\r\n")[2]
"""The first radix-64 line of ARMORED."""

BASE64 = b"Content-Transfer-Encoding: base64\r\n"
PGP_MIME = (
    b"--x\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
    b"--x\r\nContent-Type: application/octet-stream\r\n\r\n" + ARMORED + b"--x--\r\n"
)


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n" + BASE64,
         base64.encodebytes(ENVELOPED_DER), "smime"),
        (b"Content-Type: application/x-pkcs7-mime; name=\"smime.p7m\"\r\n" + BASE64,
         base64.encodebytes(ENVELOPED_DER), "smime"),
        (b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n" + BASE64,
         base64.encodebytes(AUTH_ENVELOPED_DER), "smime"),
        (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n", ENVELOPED_DER, "smime"),
        (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n" + BASE64, b"", None),
        (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n" + BASE64,
         base64.encodebytes(b"Patient Jane Roe, MRN 445566"), None),
        (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n" + BASE64,
         b"Patient Jane Roe, MRN 445566\r\n", None),
        (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n" + BASE64,
         base64.encodebytes(SIGNED_DER), None),
        (b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n" + BASE64,
         base64.encodebytes(ENVELOPED_DER), None),
        (PGP_MIME_TYPE, PGP_MIME, "pgp"),
        (b"Content-Type: Multipart/Encrypted; protocol=application/pgp-encrypted; boundary=x\r\n", PGP_MIME, "pgp"),
        (PGP_MIME_TYPE, b"", None),
        (PGP_MIME_TYPE, PGP_MIME.replace(b"application/octet-stream", b"text/plain"), None),
        (PGP_MIME_TYPE, PGP_MIME.replace(ARMORED, b"Patient Jane Roe, MRN 445566\r\n"), None),
        (PGP_MIME_TYPE, PGP_MIME.replace(ARMORED, ARMORED + b"MRN 445566\r\n"), None),
        # Text around the parts travels as it is: only a one-line notice before them.
        (PGP_MIME_TYPE, b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n" + PGP_MIME, "pgp"),
        (PGP_MIME_TYPE, b"Patient Jane Roe\r\nMRN 445566, diabetes\r\n" + PGP_MIME, None),
        (PGP_MIME_TYPE, b"Patient Jane Roe, MRN 445566, " + b"type 2 diabetes " * 8 + b"\r\n" + PGP_MIME, None),
        (PGP_MIME_TYPE, PGP_MIME + b"Patient Jane Roe, MRN 445566\r\n", None),
        (PGP_MIME_TYPE, PGP_MIME + b"\r\n\r\n", "pgp"),
        (PGP_MIME_TYPE, PGP_MIME.replace(b"Version: 1\r\n", b"Version: 1\r\nMRN 445566\r\n"), None),
        (b"Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=x\r\n", PGP_MIME, None),
        (b"Content-Type: text/plain\r\n", b"\r\n" + ARMORED, "pgp"),
        (b"", ARMORED, "pgp"),
        (b"", ARMORED + b"\r\n" + ARMORED, "pgp"),
        (b"", ARMORED.replace(b"\r\n\r\n", b"\r\nVersion: GnuPG v2\r\n\r\n", 1), "pgp"),
        (b"", ARMORED + b"\r\nPatient Jane Roe, MRN 445566\r\n", None),
        (b"", ARMORED.replace(FIRST_LINE, b"Patient Jane Roe, MRN 445566"), None),
        (b"", b"-----BEGIN PGP MESSAGE-----\r\n", None),
        (b"Content-Type: text/plain\r\n", b"quoted:\r\n" + ARMORED, None),
        (b"Content-Type: text/plain\r\n", b"hello\r\n", None),
        (b"Content-Type: TEXT/Plain ; charset=us-ascii\r\n", ARMORED, "pgp"),
        (b"Content-Type: text\r\n", ARMORED, "pgp"),
        (b"Content-Type: text/html\r\n", ARMORED, None),
        # A mail program shows the body after its transfer encoding is undone.
        (b"Content-Transfer-Encoding: quoted-printable\r\n", quopri.encodestring(ARMORED), "pgp"),
        (b"Content-Transfer-Encoding: quoted-printable\r\n",
         ARMORED.replace(FIRST_LINE, b"=4A=61=6E=65=20=52=6F=65=2C=20=4D=52=4E=20=34=34=35=35=36=36"), None),
        (b"Content-Transfer-Encoding: base64\r\n", base64.encodebytes(ARMORED), "pgp"),
        (b"Content-Transfer-Encoding: base64\r\n", ARMORED, None),
        (b"Content-Transfer-Encoding: x-uuencode\r\n", ARMORED, None),
        (b"Content-Transfer-Encoding: 7bit\r\n", ARMORED, "pgp"),
    ],
)
def test_detect_encryption_table(headers: bytes, body: bytes, expected: str | None) -> None:
    message = RawMessage.parse(b"From: a@example.org\r\n" + headers + b"\r\n" + body)

    assert detect_encryption(message) == expected


def test_encode_words_roundtrip() -> None:
    from postveil.crypto.mime import decode_text, encode_words

    text = "Befund für Jürgen " + "ä" * 60 + " 日本語"
    encoded = encode_words(text)

    assert encoded.isascii()
    assert "\n" not in encoded
    assert all(len(word) <= 75 for word in encoded.split(" "))
    assert decode_text(encoded) == text


@pytest.mark.parametrize(
    "value",
    ["Rota for next week", "Grüße  aus\tKöln", "  spaced  ", "a = b? c", "?= =", ""],
)
def test_decode_text_without_encoded_words(value: str) -> None:
    from email.header import decode_header, make_header

    from postveil.crypto.mime import decode_text

    assert decode_text(value) == value
    assert decode_text(value) == str(make_header(decode_header(value)))


def test_address_list_keeps_encoded_names() -> None:
    from postveil.crypto.mime import address_list

    values = ["=?UTF-8?Q?M=C3=BCller=2C_Hans?= <h@example.org>, b@example.org", "Jürgen <j@example.org>"]

    assert address_list(values) == ["h@example.org", "b@example.org", "j@example.org"]


ADDRESS_VALUES = [
    "<staff@example.org>",
    "staff@example.org",
    "Staff Room <staff@example.org>",
    '"Doe, John" <j.doe@example.org>, b@example.org',
    "=?UTF-8?Q?M=C3=BCller=2C_Hans?= <h@example.org>, Jürgen <j@example.org> ",
    "a@example.org,, b@example.org",
    "a@example.org,",
    "a@example.org\tb@example.org",
    "John (the boss) <j@example.org>",
    "undisclosed-recipients:;",
    "Team: a@example.org, b@example.org;",
    '"quoted local"@example.org',
    "x@[192.0.2.1]",
    "staff",
    "a@example.org <b@example.org>",
    "a@b@example.org",
    "",
]


@pytest.mark.parametrize("value", ADDRESS_VALUES)
def test_address_list_matches_getaddresses(value: str) -> None:
    from email.utils import getaddresses

    from postveil.crypto.mime import address_list

    expected = [address for _, address in getaddresses([value]) if address]

    assert address_list([value]) == expected
    assert address_list([value, "c@example.org"]) == expected + ["c@example.org"]


@pytest.mark.parametrize("value", ADDRESS_VALUES[:5])
def test_address_list_plain_mailboxes_skip_getaddresses(value: str) -> None:
    from postveil.crypto.mime import _simple_address_list

    assert _simple_address_list(value) is not None


def test_address_list_quote_across_values() -> None:
    from email.utils import getaddresses

    from postveil.crypto.mime import address_list

    values = ['"Doe, John', 'Jane" <j@example.org>']
    expected = [address for _, address in getaddresses(values) if address]

    assert address_list(values) == expected


def _simulate(message, operations) -> bytes:
    """Apply milter header calls the way an MTA that renumbers after deletions would."""
    from postveil.crypto.mime import CRLF, make_field

    fields = list(message.headers)
    for operation in operations:
        if operation.kind == "add":
            fields.append(make_field(operation.name, operation.value))
            continue
        positions = [i for i, f in enumerate(fields) if f.lower_name == operation.name.lower()]
        position = positions[operation.index - 1]
        if operation.value is None:
            del fields[position]
        else:
            fields[position] = make_field(fields[position].name, operation.value)
    return b"".join(f.raw for f in fields) + CRLF + message.body


def test_milter_operations_match_apply() -> None:
    from postveil.crypto.mime import HeaderEdits, milter_operations

    message = RawMessage.parse(
        b"Subject: a\r\nContent-Type: text/plain\r\nX-T: 1\r\nSubject: b\r\nX-T: 2\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nbody\r\n"
    )
    edits = HeaderEdits(
        remove=("Content-Type", "Content-Transfer-Encoding", "X-T", "Bcc"),
        replace=(("Subject", "Encrypted message"), ("MIME-Version", "1.0")),
        add=(("Content-Type", "application/pkcs7-mime"),),
    )

    operations = milter_operations(message, edits)

    assert _simulate(message, operations) == edits.apply(message)
    deletions = [(o.name, o.index) for o in operations if o.value is None]
    assert deletions == [("Content-Type", 1), ("Content-Transfer-Encoding", 1), ("X-T", 2), ("X-T", 1), ("Subject", 2)]
