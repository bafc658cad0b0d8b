"""Checks that DER or BER data is a CMS EnvelopedData or AuthEnvelopedData message.

Only the framing is read (RFC 5652, section 6.1, and RFC 5083, section 2.1): the outer
ContentInfo with its content type, the fields of the enveloped data in order, and the
encrypted content, whose bytes must look random. Nothing is decrypted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postveil.crypto.ciphertext import NotEncrypted, check_random

_OID = 0x06
_INTEGER = 0x02
_OCTET_STRING = 0x04
_SEQUENCE = 0x30
_SET = 0x31
_CONTEXT_0_CONSTRUCTED = 0xA0
_CONTEXT_0_PRIMITIVE = 0x80
_CONTEXT_1_CONSTRUCTED = 0xA1
_CONTEXT_2_CONSTRUCTED = 0xA2

ENVELOPED_DATA = bytes.fromhex("2a864886f70d010703")
"""id-envelopedData, 1.2.840.113549.1.7.3, as DER content octets."""

AUTH_ENVELOPED_DATA = bytes.fromhex("2a864886f70d0109100117")
"""id-ct-authEnvelopedData, 1.2.840.113549.1.9.16.1.23."""

_CONTENT_TYPE_NAMES = {
    ENVELOPED_DATA: "EnvelopedData",
    AUTH_ENVELOPED_DATA: "AuthEnvelopedData",
    bytes.fromhex("2a864886f70d010701"): "Data",
    bytes.fromhex("2a864886f70d010702"): "SignedData",
    bytes.fromhex("2a864886f70d010705"): "DigestedData",
    bytes.fromhex("2a864886f70d010706"): "EncryptedData",
    bytes.fromhex("2a864886f70d0109100102"): "AuthenticatedData",
    bytes.fromhex("2a864886f70d0109100109"): "CompressedData",
}

_MAX_DEPTH = 16
_MAX_RECIPIENT_PRINTABLE = 128
"""Printable bytes in a row allowed in the recipient infos, where issuer names are text.
X.520 limits a common name or organization name to 64 characters."""

_RECIPIENT_TEXT_RE = re.compile(b"[\x20-\x7e]{%d}" % (_MAX_RECIPIENT_PRINTABLE + 1))


@dataclass(frozen=True)
class Element:
    """One BER element: its identifier octet and where its contents and it end."""

    tag: int
    start: int
    """Offset of the first content octet."""

    end: int
    """Offset after the last content octet (before the end-of-contents octets)."""

    next: int
    """Offset of the element that follows."""


def read_element(data: bytes, position: int, limit: int, depth: int = 0) -> Element:
    """Read the element at ``position``, which must end at or before ``limit``.

    Indefinite lengths are followed through nested elements. Raises NotEncrypted for
    framing that does not parse. Tags of more than one octet are rejected because no
    CMS structure checked here uses them.
    """
    if depth > _MAX_DEPTH:
        raise NotEncrypted("cms-structure", "the CMS data is nested too deeply")
    if position + 2 > limit:
        raise NotEncrypted("cms-structure", "a CMS element is cut off")
    tag = data[position]
    if tag & 0x1F == 0x1F:
        raise NotEncrypted("cms-structure", "a CMS element has a multi-octet tag")
    first = data[position + 1]
    position += 2
    if first == 0x80:
        if not tag & 0x20:
            raise NotEncrypted("cms-structure", "an indefinite length on a primitive CMS element")
        start = position
        while True:
            if position + 2 > limit:
                raise NotEncrypted("cms-structure", "a CMS element has no end-of-contents octets")
            if data[position] == 0 and data[position + 1] == 0:
                return Element(tag, start, position, position + 2)
            position = read_element(data, position, limit, depth + 1).next
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if size > 4 or position + size > limit:
            raise NotEncrypted("cms-structure", "a CMS length is cut off or too long")
        length = int.from_bytes(data[position : position + size], "big")
        position += size
    if position + length > limit:
        raise NotEncrypted(
            "cms-structure", "a CMS element is longer than the data that contains it"
        )
    return Element(tag, position, position + length, position + length)


def _children(data: bytes, parent: Element, depth: int) -> list[Element]:
    elements: list[Element] = []
    position = parent.start
    while position < parent.end:
        element = read_element(data, position, parent.end, depth)
        elements.append(element)
        position = element.next
    return elements


def _expect(element: Element | None, tag: int, label: str) -> Element:
    if element is None or element.tag != tag:
        raise NotEncrypted("cms-structure", f"the CMS {label} is missing or has the wrong type")
    return element


def check_enveloped(data: bytes) -> str:
    """Check that ``data`` is a ContentInfo with EnvelopedData or AuthEnvelopedData.

    Returns the content type name for the audit trail. Raises NotEncrypted for another
    content type (SignedData, Data and so on), fields that do not parse, or bytes after
    the ContentInfo. It also raises for fields that carry clear text (originator info,
    unprotected or unauthenticated attributes) and for encrypted content that looks
    like text.
    """
    outer = read_element(data, 0, len(data))
    if outer.tag != _SEQUENCE:
        raise NotEncrypted("cms-structure", "the data does not start with a CMS ContentInfo")
    if outer.next != len(data):
        raise NotEncrypted("cms-structure", "data follows the CMS ContentInfo")
    children = _children(data, outer, 1)
    content_type = _expect(children[0] if children else None, _OID, "content type")
    oid = data[content_type.start : content_type.end]
    name = _CONTENT_TYPE_NAMES.get(oid, "an unknown type")
    if oid not in (ENVELOPED_DATA, AUTH_ENVELOPED_DATA):
        raise NotEncrypted("cms-content-type", f"the CMS content type is {name}, not EnvelopedData")
    if len(children) != 2:
        raise NotEncrypted("cms-structure", "the CMS ContentInfo does not have exactly two fields")
    wrapped = _children(data, _expect(children[1], _CONTEXT_0_CONSTRUCTED, "content"), 2)
    if len(wrapped) != 1:
        raise NotEncrypted("cms-structure", "the CMS content does not have exactly one element")
    enveloped = _expect(wrapped[0], _SEQUENCE, name)
    _check_enveloped_fields(data, _children(data, enveloped, 3), oid == AUTH_ENVELOPED_DATA)
    return name


def _check_enveloped_fields(data: bytes, fields: list[Element], authenticated: bool) -> None:
    """Check the fields of EnvelopedData (RFC 5652) or AuthEnvelopedData (RFC 5083)."""
    queue = list(fields)
    _expect(queue.pop(0) if queue else None, _INTEGER, "version")
    if queue and queue[0].tag == _CONTEXT_0_CONSTRUCTED:
        raise NotEncrypted(
            "cms-structure", "the CMS message carries originator info, which travels in clear"
        )
    recipients = _expect(queue.pop(0) if queue else None, _SET, "recipient infos")
    if not _children(data, recipients, 4):
        raise NotEncrypted("cms-structure", "the CMS message has no recipient")
    _check_recipient_text(data[recipients.start : recipients.end])
    content_info = _expect(queue.pop(0) if queue else None, _SEQUENCE, "encrypted content info")
    _check_encrypted_content(data, content_info)
    if authenticated:
        if queue and queue[0].tag == _CONTEXT_1_CONSTRUCTED:
            raise NotEncrypted(
                "cms-structure", "the CMS message carries authenticated attributes in clear"
            )
        _expect(queue.pop(0) if queue else None, _OCTET_STRING, "message authentication code")
    if queue:
        raise NotEncrypted(
            "cms-structure",
            "the CMS message carries unprotected attributes or other fields after its content",
        )


def _check_recipient_text(data: bytes) -> None:
    if _RECIPIENT_TEXT_RE.search(data):
        raise NotEncrypted("cms-structure", "the CMS recipient infos contain a long run of text")


def _check_encrypted_content(data: bytes, content_info: Element) -> None:
    """Check EncryptedContentInfo: content type, algorithm, and the encrypted content."""
    fields = _children(data, content_info, 4)
    if len(fields) != 3:
        raise NotEncrypted(
            "cms-structure", "the CMS encrypted content is missing or has extra fields"
        )
    _expect(fields[0], _OID, "encrypted content type")
    _expect(fields[1], _SEQUENCE, "content encryption algorithm")
    content = fields[2]
    if content.tag == _CONTEXT_0_PRIMITIVE:
        encrypted = data[content.start : content.end]
    elif content.tag == _CONTEXT_0_CONSTRUCTED:
        # BER streaming splits the octets into OCTET STRING segments.
        segments = _children(data, content, 5)
        for segment in segments:
            _expect(segment, _OCTET_STRING, "encrypted content segment")
        encrypted = b"".join(data[segment.start : segment.end] for segment in segments)
    else:
        raise NotEncrypted("cms-structure", "the CMS encrypted content has the wrong type")
    check_random(encrypted, "CMS encrypted content")
