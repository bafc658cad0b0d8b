"""A stored message as the portal shows it: headers, text, and the parts to download.

Nothing here renders HTML. A text/html part is turned into plain text for reading
(:func:`html_to_text`) and offered as a download, which the web pages send as
``application/octet-stream`` so no browser displays it as a page.
"""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from dataclasses import dataclass, replace
from email.message import EmailMessage, Message
from html.parser import HTMLParser

from postveil.crypto.mime import decode_text

HEADERS = ("From", "To", "Cc", "Date", "Subject")
"""Headers shown above the text, in this order."""

MAX_FILENAME = 120
"""Maximum length of a download's file name, in characters."""

MAX_PARTS = 1000
"""Maximum number of MIME parts in a message that the portal parses for a page or a
part download. Python 3.11's email package spends CPU time in proportion to the
parts, and a message of the largest portal.max_message_size can hold hundreds of
thousands of empty ones. A message with more is offered only as a whole download."""

MAX_PARSED_HEADER = 8192
"""Maximum length, in characters, of a From, To, Cc, Date or Subject value that the
page parses. The email package's time for a header grows faster than its length: tens
of thousands of encoded words or addresses take seconds to minutes. A longer value is
shown cut to this length, with its encoded words decoded."""

MAX_PAGE_TEXT = 200_000
"""Maximum number of characters of text that the message page shows, for all its text
parts together; the rest is in the whole message's download. It bounds the memory of
building a page: escaping can make text five times longer (``&`` becomes ``&amp;``)."""

_UNSAFE_FILENAME_RE = re.compile(r"[^\w.()+ -]")

_HIDDEN_CHARACTERS_RE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
"""Control characters other than tab, LF and CR, and the Unicode bidirectional
formatting characters (marks, embeddings, overrides, isolates)."""


@dataclass(frozen=True)
class Attachment:
    """One part a reader can download; ``number`` is its index in the download URL."""

    number: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class MessageView:
    """Content of the message page."""

    headers: tuple[tuple[str, str], ...]
    """(name, decoded value) for each header of HEADERS that the message has."""

    texts: tuple[str, ...]
    """Text of the readable body parts, HTML parts converted to plain text."""

    attachments: tuple[Attachment, ...]

    cut: bool = False
    """True when ``texts`` were cut to MAX_PAGE_TEXT characters."""


def parse_message(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def has_too_many_parts(raw: bytes) -> bool:
    """Tell, without parsing, whether ``raw`` may have more than MAX_PARTS parts.

    Each part of a multipart starts after a boundary line, which begins with ``--``,
    so the number of such lines bounds the number of parts. Plain text with many lines
    that begin with ``--`` is counted too, which only errs towards the download.
    """
    return raw.count(b"\n--") > MAX_PARTS


def leaf_parts(message: Message) -> list[Message]:
    """Return the message's non-multipart parts in order. An attached message
    (message/rfc822) counts as one part: it is offered whole, not opened."""
    if not message.is_multipart() or message.get_content_maintype() == "message":
        return [message]
    parts: list[Message] = []
    for child in _children(message):
        parts.extend(leaf_parts(child))
    return parts


def _children(part: Message) -> list[Message]:
    return [child for child in part.get_payload() if isinstance(child, Message)]


def view_message(message: EmailMessage) -> MessageView:
    """Build the page's view: decoded headers, readable text, and every part that is
    not plain text read inline (attachments and HTML versions) as a download."""
    headers = []
    for name in HEADERS:
        value = _header_text(message, name)
        if value:
            headers.append((name, value))

    readable = _readable_parts(message)
    texts = []
    attachments = []
    for number, part in enumerate(leaf_parts(message)):
        if id(part) in readable:
            texts.append(_part_text(part))
        if id(part) not in readable or part.get_content_type() == "text/html":
            attachments.append(
                Attachment(
                    number=number,
                    filename=download_filename(part, number),
                    content_type=part.get_content_type(),
                    size=len(part_bytes(part)),
                )
            )
    return MessageView(tuple(headers), tuple(texts), tuple(attachments))


def cut_texts(view: MessageView, limit: int = MAX_PAGE_TEXT) -> MessageView:
    """Return ``view`` with its texts cut to ``limit`` characters in all."""
    texts = []
    remaining = limit
    for text in view.texts:
        if len(text) > remaining:
            texts.append(text[:remaining])
            return replace(view, texts=tuple(texts), cut=True)
        texts.append(text)
        remaining -= len(text)
    return view


def part_bytes(part: Message) -> bytes:
    """Return the part's content as its sender attached it, with the transfer encoding
    undone. An attached message is returned as its whole text."""
    if part.get_content_maintype() == "message" or part.is_multipart():
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        return inner.as_bytes() if isinstance(inner, Message) else part.as_bytes()
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def visible_text(text: str) -> str:
    """Replace control characters other than tab, LF and CR, and bidirectional formatting
    characters, with U+FFFD. A right-to-left override in a From or Subject value would
    make ``gp@clinic.test`` appear where other characters stand."""
    return _HIDDEN_CHARACTERS_RE.sub("\ufffd", text)


def download_filename(part: Message, number: int) -> str:
    """Return a file name for ``part`` that is safe in a Content-Disposition header and
    on the reader's disk: no path, no control or quoting characters, no leading dot."""
    try:
        original = part.get_filename() or ""
    except (ValueError, LookupError):
        original = ""
    name = sanitise_filename(original)
    if name:
        return name
    extension = {
        "text/plain": ".txt",
        "text/html": ".html",
        "message/rfc822": ".eml",
    }.get(part.get_content_type(), ".bin")
    return f"part-{number + 1}{extension}"


def sanitise_filename(name: str) -> str:
    """Keep the last path component, letters and digits of any script and ``._-+()``
    and spaces; replace the rest with ``_``. Returns "" when nothing usable is left."""
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE_FILENAME_RE.sub("_", name)
    name = name.strip(" .")
    if len(name) > MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: MAX_FILENAME - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME]
    return "" if not name.strip("_") else name


def _header_text(message: EmailMessage, name: str) -> str:
    raw_values = _raw_header_values(message, name)
    if sum(len(value) for value in raw_values) > MAX_PARSED_HEADER:
        text = decode_text(", ".join(raw_values)[:MAX_PARSED_HEADER]) + " …"
        return visible_text(" ".join(text.split()))
    try:
        values = message.get_all(name) or []
        text = ", ".join(str(value) for value in values)
    except Exception:  # noqa: BLE001 - see below
        # The email package's header parser (Python 3.11) raises IndexError,
        # AttributeError or RecursionError on some malformed address headers, and
        # every later get() of that header raises again. Such a header is shown as it
        # arrived, with its encoded words decoded where they can be.
        text = ", ".join(decode_text(value) for value in raw_values)
    return visible_text(" ".join(text.split()))


def _raw_header_values(message: Message, name: str) -> list[str]:
    """Return the values of the ``name`` headers as they arrived, unparsed."""
    lower = name.lower()
    # 8-bit bytes arrive as surrogate escapes, which the page could not encode.
    return [
        str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        for key, value in message.raw_items()
        if key.lower() == lower
    ]


def _is_attachment(part: Message) -> bool:
    return part.get_content_disposition() == "attachment" or bool(part.get_param("name"))


def _readable_parts(message: Message) -> set[int]:
    """Return the ids of the parts whose text the page shows: text/plain and text/html
    parts that are not attachments, and of a multipart/alternative only the plain
    version when it has one."""
    readable: set[int] = set()

    def visit(part: Message) -> None:
        if part.get_content_maintype() == "message":
            return
        if part.get_content_type() == "multipart/alternative":
            children = _children(part)
            for content_type in ("text/plain", "text/html"):
                chosen = [child for child in children if child.get_content_type() == content_type]
                if chosen and not _is_attachment(chosen[0]):
                    readable.add(id(chosen[0]))
                    return
            # No text version: look inside nested structures (multipart/related).
            for child in children:
                if child.is_multipart():
                    visit(child)
                    return
            return
        if part.is_multipart():
            for child in _children(part):
                visit(child)
            return
        if part.get_content_type() in ("text/plain", "text/html") and not _is_attachment(part):
            readable.add(id(part))

    visit(message)
    return readable


def _part_text(part: Message) -> str:
    data = part_bytes(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        text = data.decode(charset, "replace")
    except (LookupError, ValueError):
        # LookupError: an unknown charset, or a codec that does not decode to text.
        # ValueError: a charset name with a NUL, or a codec such as idna or punycode
        # that rejects the "replace" handler (UnicodeError).
        text = data.decode("utf-8", "replace")
    if part.get_content_type() == "text/html":
        return html_to_text(text)
    return text


class _TextExtractor(HTMLParser):
    """Collect the text of an HTML document, with line breaks for block elements."""

    _SKIPPED = frozenset({"script", "style", "head", "title", "template"})
    _BLOCKS = frozenset(
        {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.pieces.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.pieces.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.pieces.append(data)


def html_to_text(html: str) -> str:
    """Return the visible text of an HTML document as plain text (no markup kept)."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = [" ".join(line.split()) for line in "".join(extractor.pieces).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
