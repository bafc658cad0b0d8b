"""Turning a stored message into what the page shows and what a download is called."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from postveil.portal.pages import landing, mask_address
from postveil.portal.reading import (
    MAX_FILENAME,
    MAX_PARSED_HEADER,
    html_to_text,
    leaf_parts,
    parse_message,
    part_bytes,
    sanitise_filename,
    view_message,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\scan.png", "scan.png"),
        ('a"b;c.txt', "a_b_c.txt"),
        ("line\r\nbreak.txt", "line__break.txt"),
        (".htaccess", "htaccess"),
        ("...", ""),
        ("", ""),
        ("Befund für Müller.pdf", "Befund für Müller.pdf"),
        ("診断書.pdf", "診断書.pdf"),
        ("a\x00b.txt", "a_b.txt"),
        ("name with <html>.html", "name with _html_.html"),
    ],
)
def test_sanitise_filename(given: str, expected: str) -> None:
    assert sanitise_filename(given) == expected


def test_sanitise_filename_keeps_extension_when_cut() -> None:
    name = sanitise_filename("x" * 500 + ".pdf")

    assert len(name) == MAX_FILENAME
    assert name.endswith(".pdf")


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("jordan@example.org", "j***@example.org"),
        ("a@example.org", "a***@example.org"),
        ("odd", "o***"),
    ],
)
def test_mask_address(address: str, masked: str) -> None:
    assert mask_address(address) == masked


def test_html_to_text_drops_markup_and_scripts() -> None:
    html = (
        "<html><head><title>T</title><style>b{}</style></head><body>"
        "<script>alert(1)</script><p>First &amp; <b>bold</b></p><p>Second</p></body></html>"
    )

    assert html_to_text(html) == "First & bold\n\nSecond"


def alternative_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "clinic@example.org"
    message["To"] = "pat@example.org"
    message["Subject"] = "=?utf-8?q?R=C3=A9sultats?="
    message.set_content("plain version")
    message.add_alternative("<p>html version</p>", subtype="html")
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("inner text")
    message.make_mixed()
    message.attach(_rfc822_part(inner))
    return message


def _rfc822_part(inner: EmailMessage) -> EmailMessage:
    part = EmailMessage()
    part.set_content(inner)
    return part


def test_view_prefers_plain_alternative() -> None:
    view = view_message(parse_message(alternative_message().as_bytes()))

    assert dict(view.headers)["Subject"] == "Résultats"
    assert view.texts == ("plain version\n",)
    assert [a.content_type for a in view.attachments] == ["text/html", "message/rfc822"]
    assert [a.filename for a in view.attachments] == ["part-2.html", "part-3.eml"]


def test_attached_message_is_one_part() -> None:
    message = parse_message(alternative_message().as_bytes())
    parts = leaf_parts(message)

    assert [part.get_content_type() for part in parts] == [
        "text/plain",
        "text/html",
        "message/rfc822",
    ]
    assert b"inner text" in part_bytes(parts[2])
    assert b"Subject: forwarded" in part_bytes(parts[2])


def test_undecodable_charset_still_shown() -> None:
    raw = (
        b"From: clinic@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nhello\r\n"
    )

    view = view_message(parse_message(raw))

    assert view.texts == ("hello\r\n",)


@pytest.mark.parametrize("charset", ["idna", "punycode"])
def test_strict_codec_charset_still_shown(charset: str) -> None:
    raw = (
        b"From: clinic@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\nhello\xff\r\n"
    )

    view = view_message(parse_message(raw))

    assert view.texts == ("hello\ufffd\r\n",)


@pytest.mark.parametrize(
    ("header", "shown"),
    [
        # The email package raises IndexError, AttributeError or RecursionError for these.
        (b"From: =?utf-8?q?=E2?= <", "From"),
        (b"To: :;:;:;", "To"),
        (b"To: g:a@b;c:d", "To"),
        (b"To: a@[", "To"),
        (b"Cc: " + b"(" * 5000, "Cc"),
    ],
)
def test_malformed_address_header_shown_raw(header: bytes, shown: str) -> None:
    raw = b"Subject: =?utf-8?q?R=C3=A9sultats?=\r\n" + header + b"\r\n\r\nbody\r\n"

    view = view_message(parse_message(raw))

    headers = dict(view.headers)
    assert headers["Subject"] == "Résultats"
    assert headers[shown] == header.decode().split(":", 1)[1].strip()
    assert view.texts == ("body\r\n",)


def test_malformed_header_with_8bit_bytes_shown() -> None:
    raw = b"To: \xc3\xa9\xff@[\r\n\r\nbody\r\n"

    view = view_message(parse_message(raw))

    assert dict(view.headers)["To"] == "\xe9\ufffd@["


def test_charset_with_nul_still_shown() -> None:
    raw = (
        b"Subject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: text/plain; charset="utf-8\x00"\r\n\r\nhello\r\n'
    )

    view = view_message(parse_message(raw))

    assert view.texts == ("hello\r\n",)


def test_bidi_override_in_headers_made_visible() -> None:
    # U+202E reverses the rest of the line, so "moc.elpmaxe@pg" reads as gp@example.com.
    raw = (
        b"From: =?utf-8?q?=E2=80=AEmoc=2Eelpmaxe@pg?= <x@attacker.test>\r\n"
        b"Subject: =?utf-8?q?results=E2=81=A6fdp=2Eexe?=\r\n"
        b"\r\nbody\r\n"
    )

    headers = dict(view_message(parse_message(raw)).headers)

    assert "\u202e" not in headers["From"]
    assert "\ufffdmoc.elpmaxe@pg" in headers["From"]
    assert headers["Subject"] == "results\ufffdfdp.exe"


def test_control_characters_in_headers_made_visible() -> None:
    raw = b"Subject: =?utf-8?q?a=00b=1Bc=C2=9Bd?=\r\n\r\nbody\r\n"

    headers = dict(view_message(parse_message(raw)).headers)

    assert headers["Subject"] == "a\ufffdb\ufffdc\ufffdd"


def test_landing_shows_bidi_override_in_sender() -> None:
    page = landing(
        "Clinic",
        sender="\u202etset.cinilc@pg",
        recipient="ana@dest.test",
        expires=0,
        code_action="/m/x/code",
    )

    assert "\u202e" not in page
    assert "\ufffdtset.cinilc@pg" in page


def test_long_header_cut_without_parsing() -> None:
    subject = b" ".join(b"=?utf-8?q?R=C3=A9sultat?=" for _ in range(5000))
    raw = b"Subject: " + subject + b"\r\nTo: " + b"a@b.test," * 5000 + b"\r\n\r\nbody\r\n"

    headers = dict(view_message(parse_message(raw)).headers)

    assert headers["Subject"].startswith("Résultat")
    assert headers["Subject"].endswith(" …")
    assert len(headers["Subject"]) < MAX_PARSED_HEADER
    assert headers["To"].startswith("a@b.test,a@b.test,")
    assert len(headers["To"]) == MAX_PARSED_HEADER + 2
