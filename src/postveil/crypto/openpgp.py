"""Checks that ASCII armor contains an encrypted OpenPGP message (RFC 4880 and RFC 9580).

Only the framing is read: the armor lines, the radix-64 text and the packet headers. An encrypted message is one or more session key packets
(public-key or symmetric-key) followed by exactly one encrypted data packet, and the
bytes must look random. Nothing is decrypted.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator

from postveil.crypto.ciphertext import NotEncrypted, check_random

_BEGIN = "-----BEGIN PGP MESSAGE-----"
_END = "-----END PGP MESSAGE-----"
_MAX_LINE = 76
"""Maximum length of a radix-64 line (RFC 4880, section 6.3)."""

# Armor headers (RFC 4880, section 6.2) carry free text that travels in clear, so only
# the shapes that OpenPGP programs write pass: a product name with a version number,
# and a bare web address. NOTE: a Version value still fits a few words of text.
_ARMOR_HEADER_RULES = {
    "version": re.compile(r"[A-Za-z][A-Za-z0-9.+_/#-]*(?: [A-Za-z0-9.+_/#()-]+){0,4}"),
    "comment": re.compile(r"https?://[A-Za-z0-9.-]+/?"),
    "charset": re.compile(r"[A-Za-z0-9._-]{1,32}"),
}
_VERSION_NUMBER_RE = re.compile(r"(?:^| )v?[0-9]+(?:\.[0-9]+)*(?= |\)|$)")
"""A version number in a Version armor header, such as "v2" or "10.2.0"."""

_CHECKSUM_RE = re.compile(r"=[A-Za-z0-9+/]{4}")
_MAX_ARMOR_HEADER = 48
"""Maximum length in characters of an armor header value."""

# Packet tags (RFC 9580, section 5).
PKESK, SKESK, SED, MARKER, SEIPD, AEAD, PADDING = 1, 3, 9, 10, 18, 20, 21
_SESSION_KEY_TAGS = (PKESK, SKESK)
_ENCRYPTED_DATA_TAGS = (SED, SEIPD, AEAD)
_PARTIAL_LENGTH_TAGS = (8, 9, 11, 18, 20)
"""Packets that may use partial body lengths: compressed, encrypted and literal data."""

_PACKET_NAMES = {
    PKESK: "public-key session key",
    SKESK: "symmetric-key session key",
    SED: "symmetrically encrypted data",
    MARKER: "marker",
    SEIPD: "integrity-protected data",
    AEAD: "AEAD-encrypted data",
    PADDING: "padding",
}
_PKESK_VERSIONS = (3, 6)
_SKESK_VERSIONS = (4, 5, 6)
_SEIPD_VERSIONS = (1, 2)
_MAX_SESSION_KEY_PACKET = 4096
"""Maximum size in bytes of a session key packet: an RSA-16384 ciphertext is 2 KiB."""


def check_armored_messages(text: bytes) -> str:
    """Check that ``text`` contains armored encrypted messages and blank lines only.

    Returns a summary of the packets for the audit trail, such as ``1 public-key
    session key packet, integrity-protected data packet``. Raises NotEncrypted naming the first
    problem found.
    """
    try:
        lines = text.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise NotEncrypted(
            "armor-text", "the armored text contains bytes that are not ASCII"
        ) from None
    lines = [line.rstrip("\r").rstrip(" \t") for line in lines]
    summaries: list[str] = []
    index = 0
    while index < len(lines):
        if not lines[index]:
            index += 1
            continue
        if lines[index] != _BEGIN:
            raise NotEncrypted("armor-text", "text outside the PGP message blocks")
        index, data = _read_block(lines, index + 1)
        summaries.append(check_packets(data))
    if not summaries:
        raise NotEncrypted("armor-text", "no PGP message block")
    return "; ".join(summaries)


def _read_block(lines: list[str], index: int) -> tuple[int, bytes]:
    """Read armor headers, radix-64 lines and the tail line from ``lines[index]`` on.

    Returns the index after the tail line and the decoded bytes.
    """
    seen: set[str] = set()
    while index < len(lines) and lines[index]:
        _check_armor_header(lines[index], seen)
        index += 1
    index += 1
    radix64: list[str] = []
    checksum: str | None = None
    while index < len(lines) and lines[index] != _END:
        line = lines[index]
        if checksum is not None:
            raise NotEncrypted("armor-text", "text after the armor checksum")
        if line.startswith("=") and _CHECKSUM_RE.fullmatch(line):
            # The CRC-24 is not verified: anyone can compute it, so it proves nothing.
            checksum = line[1:]
        elif len(line) > _MAX_LINE or not line:
            raise NotEncrypted("armor-text", "an armor line is empty or longer than 76 characters")
        else:
            radix64.append(line)
        index += 1
    if index >= len(lines):
        raise NotEncrypted("armor-text", "a PGP message block has no END line")
    try:
        data = base64.b64decode("".join(radix64), validate=True)
    except (binascii.Error, ValueError):
        raise NotEncrypted("armor-text", "the armor contains a line that is not radix-64") from None
    return index + 1, data


def _check_armor_header(line: str, seen: set[str]) -> None:
    key, separator, value = line.partition(": ")
    rule = _ARMOR_HEADER_RULES.get(key.lower())
    if not separator or rule is None:
        raise NotEncrypted("armor-header", "an armor header other than Version, Comment or Charset")
    if key.lower() in seen:
        raise NotEncrypted("armor-header", f"the armor header {key} appears twice")
    seen.add(key.lower())
    if (
        len(value) > _MAX_ARMOR_HEADER
        or not rule.fullmatch(value)
        or (key.lower() == "version" and not _VERSION_NUMBER_RE.search(value))
    ):
        raise NotEncrypted(
            "armor-header",
            f"the armor header {key} is not the short product name or web address OpenPGP programs write",
        )


def check_packets(data: bytes) -> str:
    """Check that ``data`` is one encrypted OpenPGP message and return a summary of it.

    Accepted: marker packets, then one or more session key packets, then exactly one
    encrypted data packet, then optional padding packets, with the bytes of them all
    passing :func:`check_random`.
    """
    counts = {PKESK: 0, SKESK: 0}
    data_tag: int | None = None
    for tag, body in _packets(data):
        name = _PACKET_NAMES.get(tag, f"type {tag}")
        if tag == PADDING and data_tag is not None:
            continue
        if data_tag is not None:
            raise NotEncrypted("packet-sequence", f"a {name} packet follows the encrypted data")
        if tag == MARKER and not any(counts.values()):
            continue
        if tag in _SESSION_KEY_TAGS:
            _check_session_key(tag, body)
            counts[tag] += 1
        elif tag in _ENCRYPTED_DATA_TAGS:
            if not any(counts.values()):
                raise NotEncrypted(
                    "packet-sequence", "the encrypted data has no session key packet before it"
                )
            _check_encrypted_data(tag, body)
            data_tag = tag
        else:
            raise NotEncrypted(
                "packet-sequence", f"a {name} packet, which an encrypted message does not contain"
            )
    if data_tag is None:
        raise NotEncrypted("packet-sequence", "no encrypted data packet")
    check_random(data, "OpenPGP packets")
    parts = [
        f"{count} {_PACKET_NAMES[tag]} packet{'s' if count > 1 else ''}"
        for tag, count in counts.items()
        if count
    ]
    return ", ".join([*parts, f"{_PACKET_NAMES[data_tag]} packet"])


def _check_session_key(tag: int, body: bytes) -> None:
    versions = _PKESK_VERSIONS if tag == PKESK else _SKESK_VERSIONS
    if not body or body[0] not in versions or len(body) > _MAX_SESSION_KEY_PACKET:
        raise NotEncrypted(
            "packet-header", f"a {_PACKET_NAMES[tag]} packet of unknown version or size"
        )


def _check_encrypted_data(tag: int, body: bytes) -> None:
    if tag == SEIPD and (not body or body[0] not in _SEIPD_VERSIONS):
        raise NotEncrypted("packet-header", "an integrity-protected data packet of unknown version")
    if tag == AEAD and (not body or body[0] != 1):
        raise NotEncrypted("packet-header", "an AEAD-encrypted data packet of unknown version")


def _packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (tag, body) for each packet, joining partial body chunks."""
    position = 0
    while position < len(data):
        first = data[position]
        if not first & 0x80:
            raise NotEncrypted("packet-header", "the data does not start an OpenPGP packet")
        if first & 0x40:
            tag = first & 0x3F
            body, position = _new_format_body(data, position + 1, tag)
        else:
            tag = (first >> 2) & 0x0F
            body, position = _old_format_body(data, position + 1, first & 0x03, tag)
        yield tag, body


def _new_format_body(data: bytes, position: int, tag: int) -> tuple[bytes, int]:
    chunks: list[bytes] = []
    while True:
        length, partial, position = _new_format_length(data, position)
        if partial and tag not in _PARTIAL_LENGTH_TAGS:
            raise NotEncrypted(
                "packet-header", "a partial body length on a packet that may not have one"
            )
        end = position + length
        if end > len(data):
            raise NotEncrypted("packet-header", "a packet is longer than the data")
        chunks.append(data[position:end])
        position = end
        if not partial:
            return b"".join(chunks), position


def _new_format_length(data: bytes, position: int) -> tuple[int, bool, int]:
    """Return (length, whether it is a partial length, position after it)."""
    if position >= len(data):
        raise NotEncrypted("packet-header", "a packet length is cut off")
    first = data[position]
    if first < 192:
        return first, False, position + 1
    if first < 224:
        if position + 1 >= len(data):
            raise NotEncrypted("packet-header", "a packet length is cut off")
        return ((first - 192) << 8) + data[position + 1] + 192, False, position + 2
    if first < 255:
        return 1 << (first & 0x1F), True, position + 1
    if position + 5 > len(data):
        raise NotEncrypted("packet-header", "a packet length is cut off")
    return int.from_bytes(data[position + 1 : position + 5], "big"), False, position + 5


def _old_format_body(data: bytes, position: int, length_type: int, tag: int) -> tuple[bytes, int]:
    if length_type == 3:
        # An indeterminate length runs to the end of the data (RFC 4880, section 4.2.1).
        if tag not in _PARTIAL_LENGTH_TAGS:
            raise NotEncrypted(
                "packet-header", "an indeterminate length on a packet that may not have one"
            )
        return data[position:], len(data)
    size = (1, 2, 4)[length_type]
    if position + size > len(data):
        raise NotEncrypted("packet-header", "a packet length is cut off")
    length = int.from_bytes(data[position : position + size], "big")
    end = position + size + length
    if end > len(data):
        raise NotEncrypted("packet-header", "a packet is longer than the data")
    return data[position + size : end], end
