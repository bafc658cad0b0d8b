"""Original messages in every content shape that must survive encryption unchanged."""

from __future__ import annotations

import base64

_HEAD = (
    b"Return-Path: <doc@sender.example>\r\n"
    b"Received: from ws1 (ws1 [127.0.0.1])\r\n\tby mx.sender.example; Fri, 4 Dec 2026 10:00:00 +0000\r\n"
    b"From: Dr. Doc <doc@sender.example>\r\n"
    b"To: Alice <alice@example.org>\r\n"
    b"Date: Fri, 4 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <shape@sender.example>\r\n"
)

PDF_BYTES = bytes(range(256)) * 40

EIGHT_BIT = (
    _HEAD
    + b"Subject: [secure] Lab results\r\n"
    + b"MIME-Version: 1.0\r\n"
    + b"Content-Type: text/plain; charset=utf-8\r\n"
    + b"Content-Transfer-Encoding: 8bit\r\n"
    + b"\r\n"
    + "Grüße aus Köln – résumé, naïve, 日本語.\r\n".encode()
    + b"Trailing spaces stay   \r\n"
    + b"From the start of a line\r\n"
    + b".\r\n"
    + b"\r\n"
)

UTF8_HEADERS = (
    _HEAD.replace(b"From: Dr. Doc", "From: Dr. Jürgen Müller".encode())
    + "Subject: Befund für Herrn Jürgen [SECURE] Größe\r\n".encode()
    + b"MIME-Version: 1.0\r\n"
    + b"Content-Type: text/plain; charset=utf-8\r\n"
    + b"Content-Transfer-Encoding: 8bit\r\n"
    + b"\r\n"
    + "Körpertext mit Umlauten.\r\n".encode()
)

ENCODED_WORD_SUBJECT = (
    _HEAD
    + b"Subject: =?UTF-8?Q?Befund_f=C3=BCr_J=C3=BCrgen_=5Bencrypt=5D?=\r\n"
    + b"MIME-Version: 1.0\r\n"
    + b"Content-Type: text/plain; charset=us-ascii\r\n"
    + b"\r\n"
    + b"Plain ASCII body.\r\n"
)

QUOTED_PRINTABLE = (
    _HEAD
    + b"Subject: [encrypt] QP\r\n"
    + b"MIME-Version: 1.0\r\n"
    + b"Content-Type: text/plain;\r\n\tcharset=\"utf-8\"\r\n"
    + b"Content-Transfer-Encoding: quoted-printable\r\n"
    + b"\r\n"
    + b"Gr=C3=BC=C3=9Fe, this line is long enough that it needs a soft line bre=\r\n"
    + b"ak in quoted-printable form=3D and an encoded equals sign.=20\r\n"
    + b"Last line without newline"
)

BASE64_ONLY = (
    _HEAD
    + b"Subject: [secure] scan\r\n"
    + b"MIME-Version: 1.0\r\n"
    + b"Content-Type: application/pdf; name=\"scan.pdf\"\r\n"
    + b"Content-Disposition: attachment; filename=\"scan.pdf\"\r\n"
    + b"Content-Transfer-Encoding: base64\r\n"
    + b"\r\n"
    + b"".join(
        base64.b64encode(PDF_BYTES)[i : i + 76] + b"\r\n"
        for i in range(0, len(base64.b64encode(PDF_BYTES)), 76)
    )
)

ALTERNATIVE_WITH_ATTACHMENTS = (
    _HEAD
    + b"Subject: [secure] Report\r\n"
    + b"MIME-Version: 1.0\r\n"
    + b"Content-Type: multipart/mixed; boundary=\"outer-b\"\r\n"
    + b"\r\n"
    + b"This is a multi-part message in MIME format.\r\n"
    + b"--outer-b\r\n"
    + b"Content-Type: multipart/alternative; boundary=\"alt-b\"\r\n"
    + b"\r\n"
    + b"--alt-b\r\n"
    + b"Content-Type: text/plain; charset=utf-8\r\n"
    + b"Content-Transfer-Encoding: 8bit\r\n"
    + b"\r\n"
    + "Siehe Anhang – Grüße\r\n".encode()
    + b"--alt-b\r\n"
    + b"Content-Type: text/html; charset=utf-8\r\n"
    + b"Content-Transfer-Encoding: quoted-printable\r\n"
    + b"\r\n"
    + b"<p>Siehe Anhang =E2=80=93 Gr=C3=BC=C3=9Fe</p>\r\n"
    + b"--alt-b--\r\n"
    + b"\r\n"
    + b"--outer-b\r\n"
    + b"Content-Type: application/pdf; name=\"a.pdf\"\r\n"
    + b"Content-Disposition: attachment; filename=\"a.pdf\"\r\n"
    + b"Content-Transfer-Encoding: base64\r\n"
    + b"\r\n"
    + base64.encodebytes(PDF_BYTES[:3000]).replace(b"\n", b"\r\n")
    + b"--outer-b\r\n"
    + b"Content-Type: text/csv; charset=utf-8; name=\"list.csv\"\r\n"
    + b"Content-Disposition: attachment; filename=\"list.csv\"\r\n"
    + b"\r\n"
    + "name;wert\r\nmüller;1\r\n".encode()
    + b"--outer-b--\r\n"
)

NESTED_RFC822 = (
    _HEAD
    + b"Subject: [secure] Fwd: referral\r\n"
    + b"MIME-Version: 1.0\r\n"
    + b"Content-Type: multipart/mixed; boundary=\"fwd-b\"\r\n"
    + b"\r\n"
    + b"--fwd-b\r\n"
    + b"Content-Type: text/plain; charset=us-ascii\r\n"
    + b"\r\n"
    + b"See the forwarded message.\r\n"
    + b"--fwd-b\r\n"
    + b"Content-Type: message/rfc822\r\n"
    + b"Content-Disposition: inline\r\n"
    + b"\r\n"
    + b"From: other@clinic.example\r\n"
    + "Subject: Überweisung [secure]\r\n".encode()
    + b"MIME-Version: 1.0\r\n"
    + b"Content-Type: text/plain; charset=utf-8\r\n"
    + b"Content-Transfer-Encoding: 8bit\r\n"
    + b"\r\n"
    + "Inner body – ünïcödé\r\n".encode()
    + b"--fwd-b--\r\n"
)

LONG_LINES = (
    _HEAD
    + b"Subject: [secure] long lines\r\n"
    + b"MIME-Version: 1.0\r\n"
    + b"Content-Type: text/plain; charset=utf-8\r\n"
    + b"Content-Transfer-Encoding: 8bit\r\n"
    + b"\r\n"
    + ("ä" * 6000).encode() + b"\r\n"
    + b"x" * 20000 + b"\r\n"
)

NO_MIME = (
    _HEAD
    + b"Subject: [secure] no MIME headers\r\n"
    + b"\r\n"
    + b"Body of a message without MIME headers.\r\n"
)

SHAPES = {
    "8bit": EIGHT_BIT,
    "utf8-headers": UTF8_HEADERS,
    "encoded-word-subject": ENCODED_WORD_SUBJECT,
    "quoted-printable": QUOTED_PRINTABLE,
    "base64": BASE64_ONLY,
    "alternative-attachments": ALTERNATIVE_WITH_ATTACHMENTS,
    "nested-rfc822": NESTED_RFC822,
    "long-lines": LONG_LINES,
    "no-mime": NO_MIME,
}

EXPECTED_SUBJECT = {
    "8bit": "Lab results",
    "utf8-headers": "Befund für Herrn Jürgen Größe",
    "encoded-word-subject": "Befund für Jürgen",
    "quoted-printable": "QP",
    "base64": "scan",
    "alternative-attachments": "Report",
    "nested-rfc822": "Fwd: referral",
    "long-lines": "long lines",
    "no-mime": "no MIME headers",
}
