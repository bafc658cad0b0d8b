"""Header protection and detection of mail the sender already encrypted.

The encrypted part carries the whole original MIME entity: its Content-* and
MIME-Version headers and body byte for byte, the Subject without tags, copies of the
address and date headers (``routing.inner_headers``) and every header that may not stay
outside. Outside, only the headers in OUTER_HEADERS and ``routing.outer_headers_allowed``
remain. The encryption's own content headers replace the original ones there, and the
Subject becomes ``routing.outer_subject``.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import quopri
import re
from dataclasses import dataclass
from email.message import Message

from postveil.config.routing import SUBJECT_COPIES, RoutingSection
from postveil.crypto.mime import CRLF, HeaderField, RawMessage, make_field, to_crlf

PROTECTED_HEADERS_PARAM = b'protected-headers="v1"'

OUTER_HEADERS = (
    # Trace and routing fields (RFC 5321, section 4.4, RFC 5322, section 3.6.6, and
    # RFC 7208, section 9.1), and Delivered-To, which Postfix and other MTAs read to
    # detect mail loops.
    "Received",
    "Received-SPF",
    "Return-Path",
    "Delivered-To",
    "Resent-Date",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "Resent-Message-ID",
    # Addresses, date and ids, for delivery, replies and threading.
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    # Replaced by routing.outer_subject.
    "Subject",
    # Results of checks by earlier hops: names of domains and methods, no content.
    "Authentication-Results",
    # Automatic replies and mailing lists (RFC 3834, RFC 2369, RFC 2919, RFC 8058).
    "Auto-Submitted",
    "Precedence",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
    # The sender's public key for Autocrypt, which mail programs read from the outer
    # header to encrypt replies; a key, no content.
    "Autocrypt",
)
"""Headers that stay outside an encrypted copy. Each name matches exactly, ignoring
case, so ``List-Patient`` or ``Received-Note`` moves inside. The original Content-* and
MIME-Version headers are not here: they move inside and the encryption writes its own.
DKIM-Signature and ARC-* are not here either, because encryption changes the body, the
Subject and Content-Type they cover, so they fail at the receiving server wherever they
are, and their ``bh=`` tag is a hash of the plaintext body. docs/milter.md gives the
reasons for each choice."""

_SMIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_SMIME_ENCRYPTED = ("enveloped-data", "authenveloped-data")

# One ASCII-armored OpenPGP message (RFC 4880, section 6.2): the armor line, armor
# headers of the standard keys, an empty line, radix-64 lines (the "=" checksum
# included) and the tail line. Text of any other kind, such as a sentence, fails it.
_ARMOR_BLOCK = (
    rb"-----BEGIN PGP MESSAGE-----[ \t]*\r?\n"
    rb"(?:(?:Version|Comment|MessageID|Hash|Charset): [^\r\n]*\r?\n)*"
    rb"[ \t]*\r?\n"
    rb"(?:[A-Za-z0-9+/=]+[ \t]*\r?\n)+"
    rb"-----END PGP MESSAGE-----[ \t]*"
)
_ARMORED_ONLY_RE = re.compile(rb"\s*(?:" + _ARMOR_BLOCK + rb"\s*)+")

# The control part of PGP/MIME contains the version line and nothing else (RFC 3156,
# section 4).
_VERSION_LINE_RE = re.compile(rb"\s*Version:[ \t]*1[ \t]*\s*")
_MAX_PREAMBLE = 120
"""Maximum length, in characters, of the one-line preamble accepted around PGP/MIME parts."""

# DER of the CMS content types (RFC 5652 and RFC 5083) that an S/MIME encrypted body
# starts with, inside its ContentInfo SEQUENCE: id-envelopedData 1.2.840.113549.1.7.3
# and id-ct-authEnvelopedData 1.2.840.113549.1.9.16.1.23.
_CMS_ENCRYPTED_OIDS = (
    bytes.fromhex("06092a864886f70d010703"),
    bytes.fromhex("060b2a864886f70d0109100117"),
)


def is_content_header(name: str) -> bool:
    """Return True for headers that describe the MIME entity (they move inside)."""
    lower = name.lower()
    return lower.startswith("content-") or lower == "mime-version"


def removed_header_names(config: RoutingSection) -> tuple[str, ...]:
    """Return the headers removed from every copy: the trigger header, and Bcc so that
    no recipient learns of the others."""
    return (config.trigger_header, "Bcc")


@dataclass(frozen=True)
class HeaderSplit:
    """Placement of each header field of a message in an encrypted copy."""

    outside: tuple[HeaderField, ...]
    """Fields on the allowlist, kept in the outer header block (Subject is replaced)."""

    moved: tuple[HeaderField, ...]
    """Fields removed outside and carried only in the encrypted part, in their
    original order: every field not on the allowlist, Content-* and MIME-Version
    included."""

    dropped: tuple[HeaderField, ...]
    """Trigger header and Bcc fields, which go nowhere."""

    def moved_names(self) -> tuple[str, ...]:
        """Return one spelling of each moved name (the first seen), for HeaderEdits."""
        names: dict[str, str] = {}
        for header in self.moved:
            names.setdefault(header.lower_name, header.name)
        return tuple(names.values())


def split_headers(message: RawMessage, config: RoutingSection) -> HeaderSplit:
    """Sort the header fields of ``message`` into those kept outside an encrypted copy,
    those moved inside and those removed from every copy.

    A field stays outside only when its name, ignoring case, is in OUTER_HEADERS or
    ``config.outer_headers_allowed``. Content headers and SUBJECT_COPIES always move,
    whatever the configuration lists.
    """
    removed = {name.lower() for name in removed_header_names(config)}
    always_inside = {name.lower() for name in SUBJECT_COPIES}
    allowed = {name.lower() for name in [*OUTER_HEADERS, *config.outer_headers_allowed]}
    outside: list[HeaderField] = []
    moved: list[HeaderField] = []
    dropped: list[HeaderField] = []
    for header in message.headers:
        lower = header.lower_name
        if lower in removed:
            dropped.append(header)
        elif is_content_header(header.name) or lower in always_inside:
            moved.append(header)
        elif lower in allowed:
            outside.append(header)
        else:
            moved.append(header)
    return HeaderSplit(tuple(outside), tuple(moved), tuple(dropped))


def _parse_content_type(value: str | None) -> Message:
    parsed = Message()
    if value is not None:
        parsed["Content-Type"] = value
    return parsed


def _media_type(value: str | None) -> str:
    """Return the lower-case type/subtype of a Content-Type value, as
    ``email.message.Message.get_content_type`` does: text/plain when the field is
    missing or its type has no single slash (RFC 2045, section 5.2)."""
    if value is None:
        return "text/plain"
    media_type = value.partition(";")[0].strip().lower()
    return media_type if media_type.count("/") == 1 else "text/plain"


def detect_encryption(message: RawMessage) -> str | None:
    """Return ``smime`` or ``pgp`` when the sender already encrypted the message.

    Recognised: top-level application/pkcs7-mime (or x-pkcs7-mime) with smime-type
    enveloped-data or authEnveloped-data (or no smime-type and a .p7m name), whose body
    is CMS enveloped or authenticated-enveloped data; multipart/encrypted with protocol
    application/pgp-encrypted and the two parts of RFC 3156, the second an armored
    OpenPGP message; and inline PGP, a text body of nothing but armored OpenPGP
    messages. A message with such a label but readable text in place of the encrypted
    data returns None, so it is protected as any other. S/MIME signed-only mail is not
    encrypted and returns None.
    """
    value = message.first_value("Content-Type")
    content_type = _media_type(value)
    if content_type in _SMIME_TYPES:
        parsed = _parse_content_type(value)
        smime_type = str(parsed.get_param("smime-type") or "").lower()
        name = str(parsed.get_param("name") or "").lower()
        labelled = smime_type in _SMIME_ENCRYPTED or (not smime_type and name.endswith(".p7m"))
        return "smime" if labelled and _is_cms_encrypted(message) else None
    if content_type == "multipart/encrypted":
        protocol = str(_parse_content_type(value).get_param("protocol") or "").lower()
        if protocol == "application/pgp-encrypted" and _is_pgp_mime(message):
            return "pgp"
        return None
    if content_type == "text/plain":
        text = _decoded_body(message)
        if text is not None and _ARMORED_ONLY_RE.fullmatch(text):
            return "pgp"
    return None


def _decoded_body(message: RawMessage) -> bytes | None:
    """Return the body with its Content-Transfer-Encoding undone, as a mail program
    shows it, or None for an encoding that is unknown or does not decode.

    Quoted-printable matters most: "=48=49" passes as radix-64 text but reads "HI".
    """
    encoding = (message.first_value("Content-Transfer-Encoding") or "").strip().lower()
    if encoding in ("", "7bit", "8bit", "binary"):
        return message.body
    if encoding == "quoted-printable":
        return quopri.decodestring(message.body)
    if encoding == "base64":
        try:
            return base64.b64decode(re.sub(rb"\s+", b"", message.body), validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def _is_cms_encrypted(message: RawMessage) -> bool:
    """Return whether the body, base64 or binary, starts as CMS encrypted data does."""
    body = message.body
    encoding = (message.first_value("Content-Transfer-Encoding") or "").strip().lower()
    if encoding == "base64":
        try:
            body = base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        except (binascii.Error, ValueError):
            return False
    head = body[:32]
    return head.startswith(b"\x30") and any(oid in head for oid in _CMS_ENCRYPTED_OIDS)


def _is_pgp_mime(message: RawMessage) -> bool:
    """Return whether a multipart/encrypted body has the two parts of RFC 3156, section 4:
    application/pgp-encrypted with its version line, then application/octet-stream
    with an armored message. Text around them travels as it is, so the preamble may be
    one short line (mail programs write a notice such as "This is an OpenPGP/MIME
    encrypted message") and the epilogue only white space."""
    parsed = email.message_from_bytes(message.to_bytes(), policy=email.policy.compat32)
    preamble = (parsed.preamble or "").strip()
    if len(preamble) > _MAX_PREAMBLE or "\n" in preamble or (parsed.epilogue or "").strip():
        return False
    parts = parsed.get_payload()
    if not isinstance(parts, list) or len(parts) != 2:
        return False
    control, data = parts
    if not isinstance(control, Message) or not isinstance(data, Message):
        return False
    if control.get_content_type() != "application/pgp-encrypted":
        return False
    version = control.get_payload(decode=True)
    if not isinstance(version, bytes) or not _VERSION_LINE_RE.fullmatch(version):
        return False
    if data.get_content_type() != "application/octet-stream" or data.is_multipart():
        return False
    payload = data.get_payload(decode=True)
    return isinstance(payload, bytes) and _ARMORED_ONLY_RE.fullmatch(payload) is not None


def build_inner_entity(message: RawMessage, subject: str | None, config: RoutingSection) -> bytes:
    """Return the MIME entity to encrypt, in canonical CRLF form.

    ``subject`` is the Subject value to put inside (tags already removed); None copies the
    original Subject field unchanged. The fields that :func:`split_headers` moves inside
    follow byte for byte and in their original order, together with copies of the
    outside fields named in ``config.inner_headers``. The content headers come last,
    then the body, copied byte for byte apart from line endings.
    """
    split = split_headers(message, config)
    moved = set(split.moved)
    copy = {name.lower() for name in config.inner_headers}
    fields: list[HeaderField] = []
    for header in message.headers:
        lower = header.lower_name
        if header in split.dropped or is_content_header(header.name):
            continue
        if lower == "subject":
            if subject is None:
                fields.append(header)
            elif not any(f.lower_name == "subject" for f in fields):
                fields.append(make_field(header.name, subject))
        elif header in moved or lower in copy:
            fields.append(header)
    content = [h for h in split.moved if is_content_header(h.name)]
    if config.mark_protected_headers:
        content = _mark_protected(content)
    fields.extend(content)
    head = b"".join(_field_bytes(field) for field in fields)
    return head + CRLF + to_crlf(message.body)


def _field_bytes(header: HeaderField) -> bytes:
    """Return the field in CRLF form, adding the line break that the last field of a
    message without a body may lack."""
    raw = to_crlf(header.raw)
    return raw if raw.endswith(CRLF) else raw + CRLF


def _mark_protected(content: list[HeaderField]) -> list[HeaderField]:
    """Add the protected-headers parameter to the Content-Type field, or add a field
    naming the RFC 2045 default type with it."""
    marked: list[HeaderField] = []
    done = False
    for header in content:
        if header.lower_name == "content-type" and not done:
            raw = header.raw.rstrip(b"\r\n").rstrip()
            raw = raw.rstrip(b";")
            marked.append(
                HeaderField(header.name, raw + b";" + CRLF + b" " + PROTECTED_HEADERS_PARAM + CRLF)
            )
            done = True
        else:
            marked.append(header)
    if not done:
        marked.append(
            HeaderField(
                "Content-Type",
                b"Content-Type: text/plain; charset=us-ascii; " + PROTECTED_HEADERS_PARAM + CRLF,
            )
        )
    return marked
