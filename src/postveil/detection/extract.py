"""Turn a raw RFC 5322 message into the texts the scanner reads.

Covers the Subject, text/plain, text/html (as text), every charset and transfer
encoding the standard library decodes, nested message/rfc822, and attachments: CSV
and TSV cell by cell, PDF (pypdf), DOCX (python-docx) and XLSX (openpyxl). Table cells
come out one per line as ``header: value``, so neighbouring cells never join into one
number and the column name gives the value its keyword.

Whatever could not be read in full is listed in ``unscanned`` with its part number,
content type and reason, never its content or file name (a file name can hold a
patient's name). Malformed MIME never raises: the worst case is an unscanned part
(tests/detection/test_fuzz.py feeds broken structures and random bytes).
"""

from __future__ import annotations

import csv
import datetime
import email
import email.header
import email.message
import email.policy
import html
import io
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass(frozen=True)
class Limits:
    """Size limits of one extraction (bytes and counts)."""

    max_part_size: int = 10_000_000
    max_attachment_size: int = 25_000_000
    max_parts: int = 500
    max_depth: int = 10


@dataclass
class Extraction:
    """Texts found in a message and descriptions of what could not be read."""

    texts: list[str] = field(default_factory=list)
    unscanned: list[str] = field(default_factory=list)
    subjects: list[int] = field(default_factory=list)
    """Indexes into ``texts`` of the Subject headers (of the message and of any
    attached message/rfc822 parts)."""


_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_ENCRYPTED = frozenset(
    {
        "application/pkcs7-mime",
        "application/x-pkcs7-mime",
        "application/pgp-encrypted",
        "application/octet-stream+pgp",
    }
)
_SIGNATURES = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}
)
_GENERIC_TYPES = frozenset(
    {"application/octet-stream", "application/x-download", "binary/octet-stream", "application/zip"}
)
# Application types whose content is plain text, and the text type to read them as.
_TEXT_LIKE = {
    "application/csv": "text/csv",
    "application/x-csv": "text/csv",
    "application/json": "text/plain",
    "application/xml": "text/plain",
    "application/ics": "text/plain",
    "application/x-yaml": "text/plain",
    "application/rtf": "text/plain",
}
_BY_EXTENSION = {
    "pdf": "application/pdf",
    "docx": _DOCX,
    "xlsx": _XLSX,
    "xlsm": _XLSX,
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "txt": "text/plain",
    "htm": "text/html",
    "html": "text/html",
    "eml": "message/rfc822",
}


def extract_message(raw: bytes, limits: Limits = Limits()) -> Extraction:
    """Extract every readable text of ``raw``. Never raises on malformed input."""
    result = _Walker(limits)
    try:
        message = _parse_single_part(raw) or email.message_from_bytes(
            raw, policy=email.policy.compat32
        )
        result.walk_message(message, depth=0)
    except Exception as exc:  # noqa: BLE001 - a broken message must not crash the milter
        result.extraction.unscanned.append(
            f"message: structure could not be parsed ({type(exc).__name__})"
        )
        result.extraction.texts.append(_decode_bytes(raw[: limits.max_part_size], "utf-8"))
    return result.extraction


def _parse_single_part(raw: bytes) -> email.message.Message | None:
    """Parse a message with one body part faster than the full parser, or return None.

    The standard parser reads the body line by line, which is most of its cost for a
    plain-text message. For a type the parser keeps whole (neither multipart nor
    message), the body it would store is exactly the bytes after the first empty line.
    Only the header block is parsed here. Anything that parser might read another way
    (line ends other than CRLF, defects, a line that is not a header) returns None, and
    the caller then parses the whole message as before. tests/detection/test_fuzz.py checks
    that both give the same texts.
    """
    end = raw.find(b"\r\n\r\n")
    if end <= 0:
        return None
    head = raw[: end + 2]
    bare = head.replace(b"\r\n", b"")
    if b"\r" in bare or b"\n" in bare:
        return None
    # The same steps as email.feedparser for a header block without defects: group
    # each field with its continuation lines and store it with the policy's parser.
    policy = email.policy.compat32
    fields: list[list[str]] = []
    # Split on CRLF only, as the parser does: str.splitlines would also split on
    # vertical tab, form feed and \x1c-\x1e, and text after one of those would be
    # read as a header field of its own.
    for line in head.decode("ascii", "surrogateescape").split("\r\n")[:-1]:
        line += "\r\n"
        if line[0] in " \t":
            if not fields:
                return None
            fields[-1].append(line)
        elif _FIELD_START.match(line):
            fields.append([line])
        else:
            return None
    message = email.message.Message(policy=policy)
    for lines in fields:
        message.set_raw(*policy.header_source_parse(lines))
    if message.get_content_maintype() in ("multipart", "message"):
        return None
    # Decoded from a view, so a large body is not first copied into a new bytes object.
    message.set_payload(str(memoryview(raw)[end + 4 :], "ascii", "surrogateescape"))
    return message


# A header field's first line as email.feedparser accepts it without a defect: a name
# of printable ASCII other than the colon, then the colon. "From " lines are excluded.
_FIELD_START = re.compile(r"[\041-\071\073-\176]+:")


class _Walker:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.extraction = Extraction()
        self.part_number = 0

    def walk_message(self, message: email.message.Message, depth: int) -> None:
        subject = message.get("Subject")
        if subject is not None:
            self.extraction.subjects.append(len(self.extraction.texts))
            self.extraction.texts.append(_decode_header(subject))
        self.walk_part(message, depth)

    def walk_part(self, part: email.message.Message, depth: int) -> None:
        self.part_number += 1
        number = self.part_number
        content_type = _content_type(part)
        if number > self.limits.max_parts:
            if number == self.limits.max_parts + 1:
                self.report(number, content_type, "more parts than the configured maximum")
            return
        if depth > self.limits.max_depth:
            self.report(number, content_type, "nested deeper than the configured maximum")
            return
        try:
            self._walk_part(part, number, content_type, depth)
        except Exception as exc:  # noqa: BLE001 - one bad part must not hide the others
            # Only the exception's class is kept, because parser messages and tracebacks
            # can quote the content, which must not reach logs or audit records.
            self.report(number, content_type, f"could not be parsed ({type(exc).__name__})")

    def _walk_part(
        self, part: email.message.Message, number: int, content_type: str, depth: int
    ) -> None:
        if part.is_multipart():
            children = part.get_payload()
            if not isinstance(children, list):
                self.report(number, content_type, "malformed multipart")
                return
            for child in children:
                if isinstance(child, email.message.Message):
                    self.walk_part(child, depth + 1)
            return
        if content_type == "message/rfc822" or (
            content_type.startswith("message/") and _is_nested(part)
        ):
            self._walk_nested(part, number, content_type, depth)
            return
        if content_type in _SIGNATURES:
            return
        if content_type in _ENCRYPTED or content_type.startswith("multipart/encrypted"):
            self.report(number, content_type, "encrypted")
            return
        payload = part.get_payload(decode=True)
        if payload is None:
            payload = b""
        if not isinstance(payload, bytes):
            self.report(number, content_type, "payload could not be decoded")
            return
        effective_type = _effective_type(part, content_type, payload)
        self._extract_leaf(part, number, effective_type, payload, depth)

    def _walk_nested(
        self, part: email.message.Message, number: int, content_type: str, depth: int
    ) -> None:
        payload = part.get_payload()
        if isinstance(payload, list):
            for inner in payload:
                if isinstance(inner, email.message.Message):
                    self.walk_message(inner, depth + 1)
            return
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes) and raw:
            self.walk_message(
                email.message_from_bytes(raw, policy=email.policy.compat32), depth + 1
            )
            return
        self.report(number, content_type, "empty or malformed nested message")

    def _extract_leaf(
        self,
        part: email.message.Message,
        number: int,
        content_type: str,
        payload: bytes,
        depth: int,
    ) -> None:
        limits = self.limits
        if content_type == "message/rfc822":
            self.walk_message(
                email.message_from_bytes(payload, policy=email.policy.compat32), depth + 1
            )
            return
        if content_type.startswith("text/"):
            truncated = len(payload) > limits.max_part_size
            text = _decode_bytes(
                payload[: limits.max_part_size], part.get_content_charset() or "utf-8"
            )
            if content_type == "text/html":
                text = html_to_text(text)
            elif content_type in ("text/csv", "text/tab-separated-values"):
                delimiter = (
                    "\t" if content_type == "text/tab-separated-values" else _sniff_delimiter(text)
                )
                text = "\n".join(table_to_lines(csv.reader(io.StringIO(text), delimiter=delimiter)))
            self.extraction.texts.append(text)
            if truncated:
                self.report(
                    number,
                    content_type,
                    f"only the first {limits.max_part_size} bytes were scanned",
                )
            return
        if content_type in ("application/pdf", _DOCX, _XLSX):
            if len(payload) > limits.max_attachment_size:
                self.report(number, content_type, "larger than the configured attachment limit")
                return
            if content_type != "application/pdf" and _zip_expands_beyond(
                payload, _EXPANSION_FACTOR * limits.max_attachment_size
            ):
                self.report(number, content_type, "expands beyond the configured attachment limit")
                return
            text, complete = _extract_document(content_type, payload, limits.max_part_size)
            self.extraction.texts.append(text)
            if not complete:
                self.report(number, content_type, "text layer incomplete or truncated")
            return
        if content_type.startswith("image/") and _is_inline_decoration(part):
            # Logos and signature images referenced from the HTML body carry no text
            # the scanner could read, and flagging them would mark most mail.
            return
        if not payload:
            return
        self.report(number, content_type, "unsupported type")

    def report(self, number: int, content_type: str, reason: str) -> None:
        self.extraction.unscanned.append(f"part {number} ({content_type}): {reason}")


def _content_type(part: email.message.Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:  # noqa: BLE001 - a garbled header must not stop the walk
        return "application/octet-stream"


def _is_nested(part: email.message.Message) -> bool:
    return isinstance(part.get_payload(), list)


def _effective_type(part: email.message.Message, content_type: str, payload: bytes) -> str:
    """Resolve generic or misleading content types by file extension and magic bytes.

    Mail programs send CSV files as application/vnd.ms-excel and PDFs as
    application/octet-stream, so the declared type alone would leave them unscanned.
    """
    if content_type in _TEXT_LIKE:
        return _TEXT_LIKE[content_type]
    if payload.startswith(b"%PDF-"):
        return "application/pdf"
    # A text part keeps its type unless it is an Office file by magic bytes and name,
    # so most parts skip parsing the file name parameters.
    if content_type.startswith("text/") and not payload.startswith(b"PK"):
        return content_type
    try:
        filename = (part.get_filename() or "").lower()
    except Exception:  # noqa: BLE001 - a garbled RFC 2231 parameter
        filename = ""
    extension = filename.rsplit(".", 1)[-1] if "." in filename else ""
    if payload.startswith(b"PK") and extension in ("docx", "xlsx", "xlsm"):
        return _BY_EXTENSION[extension]
    if extension in ("csv", "tsv") and not content_type.startswith("text/"):
        return _BY_EXTENSION[extension]
    if content_type in _GENERIC_TYPES and extension in _BY_EXTENSION:
        return _BY_EXTENSION[extension]
    return content_type


def _is_inline_decoration(part: email.message.Message) -> bool:
    disposition = (part.get("Content-Disposition") or "").lower()
    return part.get("Content-ID") is not None and not disposition.startswith("attachment")


def _decode_header(value: object) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:  # noqa: BLE001 - unknown charset or broken encoded-word
        return str(value)


def _decode_bytes(data: bytes, charset: str) -> str:
    """Decode a text part, with SMTP's CRLF line ends read as LF, so that a keyword or
    phrase continues across a wrapped line ("member\r\nID") as it does in LF text.

    NOTE: parts over _CRLF_LIMIT characters keep their CRLF, because the replacement
    is a second copy of the text (25 MB more for a 25 MB part). In them a label
    wrapped over a line is not read as one."""
    try:
        text = data.decode(charset, errors="replace")
    except LookupError:
        text = data.decode("utf-8", errors="replace")
    if len(text) <= _CRLF_LIMIT and "\r" in text:
        return text.replace("\r\n", "\n")
    return text


_CRLF_LIMIT = 4 * 1024 * 1024


class _TextCollector(HTMLParser):
    """Collect the visible text, one block element per line. A table row becomes one
    line with its cells separated by tabs, as a pasted spreadsheet row is, so the rules
    for table rows read EHR reports sent as HTML ("6W-11<TAB>Lockridge, Amos<TAB>67 M")."""

    _SKIP = frozenset({"script", "style", "head", "title"})
    _BREAKS = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skipping = 0
        self._cells_in_row = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in ("td", "th"):
            # A tab between cells keeps them separate words, so neighbouring numbers
            # never join into one.
            if self._cells_in_row:
                self.pieces.append("\t")
            self._cells_in_row += 1
        elif tag in self._BREAKS:
            self.pieces.append("\n")
            if tag in ("tr", "table"):
                self._cells_in_row = 0

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in ("td", "th"):
            self.pieces.append(" ")
        elif tag in ("tr", "table"):
            self.pieces.append("\n")
            self._cells_in_row = 0

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.pieces.append(data)


def html_to_text(markup: str) -> str:
    """Return the visible text of an HTML document, one block element per line."""
    collector = _TextCollector()
    try:
        collector.feed(markup)
        collector.close()
    except Exception:  # noqa: BLE001 - HTMLParser can raise on pathological markup
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    return "".join(collector.pieces)


def _sniff_delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    counts = {delimiter: first_line.count(delimiter) for delimiter in (",", ";", "\t", "|")}
    best = max(counts, key=lambda key: counts[key])
    return best if counts[best] else ","


def table_to_lines(rows: Iterable[Iterable[object]]) -> Iterable[str]:
    """Yield one ``header: value`` line per non-empty cell, the first row being the
    header. Rows are separated by an empty line."""
    header: list[str] | None = None
    for row in rows:
        cells = [_cell_text(cell) for cell in row]
        if header is None:
            header = cells
            yield "  ".join(cell for cell in cells if cell)
            continue
        for index, cell in enumerate(cells):
            if not cell:
                continue
            name = header[index] if index < len(header) and header[index] else f"column {index + 1}"
            yield f"{name}: {cell}"
        yield ""


def _cell_text(cell: object) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, datetime.datetime):
        return (
            cell.date().isoformat() if cell.time() == datetime.time() else cell.isoformat(sep=" ")
        )
    if isinstance(cell, datetime.date):
        return cell.isoformat()
    return " ".join(str(cell).split())


# DOCX and XLSX files are ZIP archives whose XML the libraries decompress in full. One
# that would expand to more than this many times the attachment limit is not opened,
# so a small "zip bomb" cannot exhaust the milter's memory.
_EXPANSION_FACTOR = 4


def _zip_expands_beyond(payload: bytes, limit: int) -> bool:
    """Return whether the archive's declared uncompressed size exceeds ``limit``.

    Raises on data that is not a ZIP archive (reported as unparseable by the caller).
    """
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return sum(info.file_size for info in archive.infolist()) > limit


def _extract_document(content_type: str, payload: bytes, max_chars: int) -> tuple[str, bool]:
    """Return (text, complete). Raises on a document the library cannot open."""
    if content_type == "application/pdf":
        return _pdf_text(payload, max_chars)
    if content_type == _DOCX:
        return _docx_text(payload, max_chars)
    return _xlsx_text(payload, max_chars)


def _pdf_text(payload: bytes, max_chars: int) -> tuple[str, bool]:
    # NOTE: there is no time limit here. pypdf reads a PDF of many pages in seconds, so
    # the caller's timeout (the milter's) is what bounds a very large attachment.
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(payload))
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception:  # noqa: BLE001 - a password we do not have
            return "", False
    pieces: list[str] = []
    size = 0
    complete = True
    for page in reader.pages:
        text = page.extract_text() or ""
        pieces.append(text)
        size += len(text)
        if size > max_chars:
            complete = False
            break
    text = "\n".join(pieces)
    # A page with no text layer (a scan without OCR) cannot be read.
    if reader.pages and not text.strip():
        complete = False
    return text[:max_chars], complete


def _docx_text(payload: bytes, max_chars: int) -> tuple[str, bool]:
    import docx

    document = docx.Document(io.BytesIO(payload))
    lines = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        rows = ([cell.text for cell in row.cells] for row in table.rows)
        lines.extend(table_to_lines(rows))
    for section in document.sections:
        for paragraph in list(section.header.paragraphs) + list(section.footer.paragraphs):
            lines.append(paragraph.text)
    text = "\n".join(lines)
    return text[:max_chars], len(text) <= max_chars


def _xlsx_text(payload: bytes, max_chars: int) -> tuple[str, bool]:
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(payload), read_only=True, data_only=True)
    lines: list[str] = []
    size = 0
    try:
        for sheet in workbook.worksheets:
            lines.append(str(sheet.title))
            for line in table_to_lines(sheet.iter_rows(values_only=True)):
                lines.append(line)
                size += len(line) + 1
                if size > max_chars:
                    return "\n".join(lines), False
    finally:
        workbook.close()
    return "\n".join(lines), True
