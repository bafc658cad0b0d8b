"""Detection of mail the sender already encrypted, which postveil does not encrypt again.

A label such as ``multipart/encrypted`` is not enough, because such mail leaves as it
is: everything outside the encryption must be what encryption programs write, and the
encrypted data must be framed as an encrypted OpenPGP or CMS message and look random.
Whatever fails counts as not encrypted and is routed as its class requires.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import quopri
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message

from postveil.config.routing import RoutingSection
from postveil.crypto.ciphertext import NotEncrypted
from postveil.crypto.cms import check_enveloped
from postveil.crypto.mime import RawMessage, decode_text
from postveil.crypto.openpgp import check_armored_messages
from postveil.crypto.protect import is_content_header, split_headers

SMIME = "smime"
PGP = "pgp"

_SMIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_SMIME_ENCRYPTED = ("enveloped-data", "authenveloped-data")
_TRANSFER_ENCODINGS = ("7bit", "8bit", "binary", "quoted-printable", "base64")

# Words that encryption programs write in Content-Description, file names and the
# preamble of multipart/encrypted, such as "This is an OpenPGP/MIME encrypted message
# (RFC 4880 and 3156)" or "S/MIME Encrypted Message". Any other word may be content.
_NOTICE_WORDS = frozenset(
    "this is an a the of and openpgp pgp gpg gnupg mime s smime encrypted encryption message "
    "version versions identification identifier control data part body attachment content "
    "msg asc p7m pgpexch htm rfc 2440 3156 4880 9580 5751 8551".split()
)
_WORD_RE = re.compile(r"[a-z0-9]+")
_MAX_NOTICE = 120
"""Maximum length in characters of a description, file name or preamble line."""

_CONTENT_TYPE_PARAMETERS = {
    "application/pkcs7-mime": ("smime-type", "name"),
    "application/x-pkcs7-mime": ("smime-type", "name"),
    "multipart/encrypted": ("protocol", "boundary"),
    "application/pgp-encrypted": (),
    "application/octet-stream": ("name",),
    "text/plain": ("charset", "format", "delsp"),
}
_PARAMETER_RULES = {
    "smime-type": re.compile(r"(?i)enveloped-data|authenveloped-data"),
    "protocol": re.compile(r"(?i)application/pgp-encrypted"),
    # NOTE: a boundary is free text of up to 70 characters (RFC 2046, section 5.1.1)
    # that travels in clear, and a chosen one cannot be distinguished from a generated one.
    "boundary": re.compile(r"[0-9A-Za-z'()+_,./:=? -]{1,70}"),
    "charset": re.compile(r"[A-Za-z0-9._-]{1,32}"),
    "format": re.compile(r"(?i)flowed|fixed"),
    "delsp": re.compile(r"(?i)yes|no"),
}
_DISPOSITIONS = ("inline", "attachment")
_PART_HEADERS = (
    "content-type",
    "content-transfer-encoding",
    "content-description",
    "content-disposition",
    "content-language",
)
# Language tags (RFC 5646) of the shape mail programs write, such as "en-US", "de" or
# "zh-Hant-TW", up to three in a list. Longer subtags could spell words.
_LANGUAGE_LIST_RE = re.compile(
    r"(?i)[a-z]{2,3}(?:-[a-z]{4})?(?:-(?:[a-z]{2}|[0-9]{3}))?"
    r"(?:\s*,\s*[a-z]{2,3}(?:-[a-z]{4})?(?:-(?:[a-z]{2}|[0-9]{3}))?){0,2}"
)
# MIME-Version with the comment Apple Mail writes, "1.0 (Mac OS X Mail 16.0 \(3731.500.231\))".
_MIME_VERSION_RE = re.compile(r"1\.0(?:\s*\((.{1,80})\))?")
_MIME_VERSION_WORDS = frozenset({"mac", "os", "x", "mail", "apple", "message", "framework"})
# Fields that mail programs write on their own, with the values they give them. A
# program name and version with an optional comment, such as "Mozilla/5.0 (X11; Linux
# x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0" or "Microsoft Outlook 16.0".
_PRODUCT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._/+;:,()\[\]-]{0,149}")
_CLIENT_FIELDS: dict[str, re.Pattern[str]] = {
    "user-agent": _PRODUCT_RE,
    "x-mailer": _PRODUCT_RE,
    "thread-index": re.compile(r"[A-Za-z0-9+/=]{1,200}"),
    "thread-topic": re.compile(r".*"),  # see _client_field_allowed
    "x-ms-has-attach": re.compile(r"(?i)yes|no|"),
    "x-ms-tnef-correlator": re.compile(r"<?[A-Za-z0-9@._+=-]{0,100}>?"),
    "importance": re.compile(r"(?i)low|normal|high"),
    "priority": re.compile(r"(?i)non-urgent|normal|urgent"),
    "x-priority": re.compile(r"[1-5](?: \((?i:highest|high|normal|low|lowest)\))?"),
    "x-msmail-priority": re.compile(r"(?i)low|normal|high"),
    # Exchange adds the sender's language as it does Content-Language.
    "accept-language": _LANGUAGE_LIST_RE,
}
_ARMOR_LINE = b"-----BEGIN PGP MESSAGE-----"
_VERSION_LINE_RE = re.compile(rb"\s*Version:[ \t]*1[ \t]*\s*")


@dataclass(frozen=True)
class EncryptionCheck:
    """Whether the sender already encrypted a message, and why it counts or not.

    ``code`` and ``reason`` describe the structure only, never the message's text, so
    the audit trail may store them.
    """

    scheme: str | None
    """``smime`` or ``pgp`` when the message counts as encrypted, else None."""

    code: str
    """Short identifier: the format that counted (``smime``, ``pgp-mime``,
    ``inline-pgp``), the check that failed, or ``none`` for mail without an encryption
    label."""

    reason: str

    @property
    def labelled(self) -> bool:
        """True when the message claimed to be encrypted, whether or not it counted."""
        return self.code != "none"


NOT_LABELLED = EncryptionCheck(None, "none", "no encryption label")


def check_encryption(message: RawMessage, routing: RoutingSection | None = None) -> EncryptionCheck:
    """Check whether the sender already encrypted ``message``.

    Three formats are recognised. S/MIME is top-level application/pkcs7-mime (or
    x-pkcs7-mime) with smime-type enveloped-data or authEnveloped-data (or no smime-type
    and a .p7m name) around CMS EnvelopedData or AuthEnvelopedData. PGP/MIME is
    multipart/encrypted with protocol application/pgp-encrypted and exactly the two
    parts of RFC 3156. Inline PGP is a text/plain body of nothing but armored OpenPGP
    messages. The header fields must be
    those an encrypted copy of postveil's keeps outside (``routing`` adds
    ``outer_headers_allowed``; None uses the defaults), and the content headers must
    hold only what encryption programs write there.
    """
    routing = routing if routing is not None else RoutingSection()
    value = message.first_value("Content-Type")
    media_type = _media_type(value)
    try:
        if media_type in _SMIME_TYPES:
            if not _smime_labelled(value):
                return NOT_LABELLED
            _check_outer_headers(message, routing)
            name = check_enveloped(
                _decode_strictly(message.body, message.first_value("Content-Transfer-Encoding"))
            )
            return EncryptionCheck(SMIME, "smime", f"S/MIME with CMS {name}")
        if media_type == "multipart/encrypted":
            if (
                str(_parse_content_type(value).get_param("protocol") or "").lower()
                != "application/pgp-encrypted"
            ):
                return NOT_LABELLED
            _check_outer_headers(message, routing)
            summary = _check_pgp_mime(message)
            return EncryptionCheck(PGP, "pgp-mime", f"PGP/MIME with {summary}")
        if media_type == "text/plain":
            return _check_inline_pgp(message, routing)
    except NotEncrypted as failure:
        return EncryptionCheck(None, failure.code, failure.reason)
    return NOT_LABELLED


def detect_encryption(message: RawMessage, routing: RoutingSection | None = None) -> str | None:
    """Return ``smime`` or ``pgp`` when ``message`` counts as already encrypted (see
    :func:`check_encryption`), else None."""
    return check_encryption(message, routing).scheme


def _check_inline_pgp(message: RawMessage, routing: RoutingSection) -> EncryptionCheck:
    """Check a text body that contains an armored OpenPGP message, as a mail program
    shows it once the Content-Transfer-Encoding is undone."""
    try:
        text = _decode_strictly(message.body, message.first_value("Content-Transfer-Encoding"))
    except NotEncrypted:
        return NOT_LABELLED
    if not _has_armor_line(text):
        return NOT_LABELLED
    _check_outer_headers(message, routing)
    summary = check_armored_messages(text)
    return EncryptionCheck(PGP, "inline-pgp", f"inline PGP with {summary}")


def _has_armor_line(text: bytes) -> bool:
    """Return whether a line of ``text`` starts with the armor header line."""
    # bytes.find instead of a MULTILINE "^" pattern, which tries a match at every
    # position: this runs on every plain-text message.
    start = text.find(_ARMOR_LINE)
    while start != -1:
        if start == 0 or text[start - 1] in b"\r\n":
            return True
        start = text.find(_ARMOR_LINE, start + 1)
    return False


def _media_type(value: str | None) -> str:
    """Return the lower-case type/subtype of a Content-Type value, as
    ``email.message.Message.get_content_type`` does: text/plain when the field is
    missing or its type has no single slash (RFC 2045, section 5.2)."""
    if value is None:
        return "text/plain"
    media_type = value.partition(";")[0].strip().lower()
    return media_type if media_type.count("/") == 1 else "text/plain"


def _parse_content_type(value: str | None) -> Message:
    parsed = Message()
    if value is not None:
        parsed["Content-Type"] = value
    return parsed


def _smime_labelled(value: str | None) -> bool:
    parsed = _parse_content_type(value)
    smime_type = str(parsed.get_param("smime-type") or "").lower()
    name = str(parsed.get_param("name") or "").lower()
    return smime_type in _SMIME_ENCRYPTED or (not smime_type and name.endswith(".p7m"))


def _check_outer_headers(message: RawMessage, routing: RoutingSection) -> None:
    """Raise NotEncrypted unless every header field may stay outside an encryption.

    A pre-encrypted message leaves as it is, so a field that an encrypted copy of
    postveil's would move inside (``X-Patient``, ``Keywords``, ``Thread-Topic``) has
    nowhere to go. The content headers must hold only what encryption programs write.
    NOTE: the Subject stays outside as the sender wrote it, minus the tags.
    """
    split = split_headers(message, routing)
    content_fields = []
    for field in split.moved:
        if is_content_header(field.name):
            content_fields.append(field)
        elif not _client_field_allowed(field.lower_name, field.value, message):
            raise NotEncrypted(
                "outer-header",
                "a header field that is not on the outer allowlist would leave in clear",
            )
    fields = [(field.lower_name, field.value) for field in content_fields]
    _check_content_fields(fields, top_level=True)


def _client_field_allowed(name: str, value: str, message: RawMessage) -> bool:
    """Return whether ``name`` is a field that mail programs write on their own and
    ``value`` has the shape they give it.

    Such fields (User-Agent, Outlook's Thread-Index and priority fields) hold no text
    that the sender typed, so they stay outside mail the sender encrypted, unlike
    ``X-Patient`` or ``Keywords``. Thread-Topic is the Subject's text, which detection
    reads, so it passes only when the Subject contains it.
    """
    rule = _CLIENT_FIELDS.get(name)
    if rule is None:
        return False
    if name == "thread-topic":
        topic = _folded_words(decode_text(value, lenient=True))
        subjects = [
            _folded_words(decode_text(subject, lenient=True))
            for subject in message.values("Subject")
        ]
        return bool(topic) and any(topic in subject for subject in subjects)
    return rule.fullmatch(value.strip()) is not None


def _folded_words(text: str) -> str:
    return " ".join(text.casefold().split())


def _check_content_fields(fields: Iterable[tuple[str, str]], *, top_level: bool) -> None:
    """Check the Content-* fields of the message or of a part of multipart/encrypted."""
    seen: set[str] = set()
    for name, value in fields:
        # The name is checked against the known ones first, so a reason never repeats
        # a name the sender chose.
        if name not in _PART_HEADERS and not (name == "mime-version" and top_level):
            raise NotEncrypted(
                "content-header", "a content header other than the ones encryption programs write"
            )
        if name in seen:
            raise NotEncrypted("content-header", f"the {name} field appears twice")
        seen.add(name)
        if name == "mime-version":
            _check_mime_version(value)
        elif name == "content-type":
            _check_content_type(value)
        elif name == "content-transfer-encoding":
            if value.lower() not in _TRANSFER_ENCODINGS:
                raise NotEncrypted("content-header", "an unknown Content-Transfer-Encoding")
        elif name == "content-description":
            _check_notice(value, "Content-Description")
        elif name == "content-language":
            if not _LANGUAGE_LIST_RE.fullmatch(value):
                raise NotEncrypted(
                    "content-header", "a Content-Language that is not a short list of language tags"
                )
        else:
            _check_disposition(value)


def _check_mime_version(value: str) -> None:
    match = _MIME_VERSION_RE.fullmatch(value)
    words = _WORD_RE.findall((match.group(1) or "").lower()) if match else []
    if match is None or any(
        not word.isdigit() and word not in _MIME_VERSION_WORDS for word in words
    ):
        raise NotEncrypted(
            "content-header", "MIME-Version is not 1.0 with at most a mail program's name"
        )


def _check_content_type(value: str) -> None:
    parsed = _parse_content_type(value)
    allowed = _CONTENT_TYPE_PARAMETERS.get(parsed.get_content_type())
    if allowed is None:
        raise NotEncrypted(
            "content-header", "a part of a type that an encrypted message does not contain"
        )
    for key, parameter in (parsed.get_params() or [])[1:]:
        key = key.lower()
        if key not in allowed:
            raise NotEncrypted(
                "content-header", "a Content-Type parameter that encryption programs do not write"
            )
        text = str(parameter)
        if key == "name":
            _check_notice(text, "file name")
        elif not _PARAMETER_RULES[key].fullmatch(text):
            raise NotEncrypted(
                "content-header", f"the Content-Type parameter {key} has an unexpected value"
            )


def _check_disposition(value: str) -> None:
    parsed = Message()
    parsed["Content-Disposition"] = value
    params = parsed.get_params(header="Content-Disposition") or []
    if not params or params[0][0].lower() not in _DISPOSITIONS:
        raise NotEncrypted(
            "content-header", "a Content-Disposition other than inline or attachment"
        )
    for key, parameter in params[1:]:
        if key.lower() != "filename":
            raise NotEncrypted(
                "content-header", "a Content-Disposition parameter other than filename"
            )
        _check_notice(str(parameter), "file name")


def _check_notice(text: str, label: str) -> None:
    """Raise NotEncrypted unless ``text`` is a short notice of the words in _NOTICE_WORDS."""
    if len(text) > _MAX_NOTICE or any(
        word not in _NOTICE_WORDS for word in _WORD_RE.findall(text.lower())
    ):
        raise NotEncrypted(
            "notice-text", f"the {label} contains words that encryption programs do not write"
        )


def _decode_strictly(body: bytes, encoding: str | None) -> bytes:
    """Return ``body`` with its Content-Transfer-Encoding undone, as a mail program
    shows it. Raises NotEncrypted for an unknown encoding or base64 that does not
    decode, since a mail program may show such text as it is.

    Quoted-printable matters: "=48=49" passes as radix-64 text but reads "HI".
    """
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "7bit", "8bit", "binary"):
        return body
    if encoding == "quoted-printable":
        return quopri.decodestring(body)
    if encoding == "base64":
        try:
            return base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        except (binascii.Error, ValueError):
            raise NotEncrypted("transfer-encoding", "the base64 body does not decode") from None
    raise NotEncrypted("transfer-encoding", "an unknown Content-Transfer-Encoding")


def _check_pgp_mime(message: RawMessage) -> str:
    """Check a multipart/encrypted body: the two parts of RFC 3156, section 4, and
    nothing else. Text around the parts travels as it is, so the preamble may only be
    the one-line notice that mail programs write and the epilogue only white space."""
    parsed = email.message_from_bytes(message.to_bytes(), policy=email.policy.compat32)
    if parsed.defects:
        raise NotEncrypted("mime-structure", "the multipart/encrypted body does not parse cleanly")
    preamble = (parsed.preamble or "").strip()
    if "\n" in preamble:
        raise NotEncrypted("notice-text", "the preamble has more than one line")
    _check_notice(preamble, "preamble")
    if (parsed.epilogue or "").strip():
        raise NotEncrypted("notice-text", "text follows the last part")

    parts = parsed.get_payload()
    if not isinstance(parts, list) or len(parts) != 2:
        raise NotEncrypted("mime-structure", "multipart/encrypted does not have exactly two parts")
    control, data = parts
    if not isinstance(control, Message) or not isinstance(data, Message):
        raise NotEncrypted("mime-structure", "a part of multipart/encrypted does not parse")
    if control.get_content_type() != "application/pgp-encrypted":
        raise NotEncrypted("mime-structure", "the first part is not application/pgp-encrypted")
    if data.get_content_type() != "application/octet-stream" or data.is_multipart():
        raise NotEncrypted("mime-structure", "the second part is not application/octet-stream")

    for part in (control, data):
        if part.defects:
            raise NotEncrypted(
                "mime-structure", "a part of multipart/encrypted does not parse cleanly"
            )
        _check_content_fields(
            ((key.lower(), str(value)) for key, value in part.items()), top_level=False
        )

    control_body = _decode_strictly(_part_body(control), control.get("Content-Transfer-Encoding"))
    if not _VERSION_LINE_RE.fullmatch(control_body):
        raise NotEncrypted(
            "mime-structure", "the first part does not hold only the line Version: 1"
        )
    return check_armored_messages(
        _decode_strictly(_part_body(data), data.get("Content-Transfer-Encoding"))
    )


def _part_body(part: Message) -> bytes:
    payload = part.get_payload()
    if not isinstance(payload, str):
        raise NotEncrypted("mime-structure", "a part of multipart/encrypted does not parse")
    return payload.encode("utf-8", errors="surrogateescape")
