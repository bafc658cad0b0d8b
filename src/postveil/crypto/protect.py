"""Header protection: which header fields stay outside an encrypted copy.

The encrypted part carries the whole original MIME entity: its Content-* and
MIME-Version headers and body byte for byte, the Subject without tags, copies of the
address and date headers (``routing.inner_headers``) and every header that may not stay
outside. Outside, only the headers in OUTER_HEADERS and ``routing.outer_headers_allowed``
remain. The encryption's own content headers replace the original ones there, and the
Subject becomes ``routing.outer_subject``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
