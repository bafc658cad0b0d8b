"""Well-framed encrypted messages built byte by byte, and readable text dressed up as them.

The "ciphertext" is seeded random bytes: it has the framing and statistics of real
encrypted data, so the checks accept it, and each variant changes one thing.
"""

from __future__ import annotations

import base64
import random

PHI = b"Patient Jane Roe, MRN 445566, type 2 diabetes, HbA1c 9.1%. "
"""Readable text of the kind that must never leave in clear."""

_random = random.Random(20261206)


def random_bytes(size: int) -> bytes:
    return _random.randbytes(size)


def packet(tag: int, body: bytes) -> bytes:
    """Return an OpenPGP packet in the new format with a five-octet length."""
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


def old_packet(tag: int, body: bytes) -> bytes:
    """Return an OpenPGP packet in the old format with a two-octet length."""
    return bytes([0x80 | (tag << 2) | 1]) + len(body).to_bytes(2, "big") + body


def pkesk() -> bytes:
    """A version 3 public-key session key packet for RSA with a 2048-bit MPI."""
    mpi = b"\x08\x00" + bytes([0x80 | _random.randrange(128)]) + random_bytes(255)
    return packet(1, b"\x03" + random_bytes(8) + b"\x01" + mpi)


def seipd(body: bytes | None = None) -> bytes:
    """A version 1 integrity-protected data packet, random unless ``body`` is given."""
    return packet(18, b"\x01" + (random_bytes(180) if body is None else body))


def armor(data: bytes, headers: bytes = b"") -> bytes:
    """Return ``data`` as an armored PGP MESSAGE block in CRLF form."""
    text = base64.b64encode(data)
    lines = b"\r\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return (
        b"-----BEGIN PGP MESSAGE-----\r\n" + headers + b"\r\n" + lines + b"\r\n"
        b"-----END PGP MESSAGE-----\r\n"
    )


PGP_PACKETS = pkesk() + seipd()
ARMORED = armor(PGP_PACKETS)


def pgp_mime(
    data: bytes = ARMORED,
    *,
    preamble: bytes = b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n",
    control_headers: bytes = b"Content-Description: PGP/MIME version identification\r\n",
    data_headers: bytes = b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n',
    extra_part: bytes = b"",
    epilogue: bytes = b"",
) -> bytes:
    """Return a multipart/encrypted body as Thunderbird writes it, with boundary x."""
    return (
        preamble + b"--x\r\nContent-Type: application/pgp-encrypted\r\n" + control_headers
        + b"\r\nVersion: 1\r\n\r\n--x\r\n" + data_headers + b"\r\n" + data + extra_part
        + b"--x--\r\n" + epilogue
    )


PGP_MIME_TYPE = b'Content-Type: multipart/encrypted;\r\n protocol="application/pgp-encrypted"; boundary=x\r\n'


def tlv(tag: int, content: bytes) -> bytes:
    """Return a DER element with a definite length."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


ID_DATA = bytes.fromhex("2a864886f70d010701")
ID_SIGNED_DATA = bytes.fromhex("2a864886f70d010702")
ID_ENVELOPED_DATA = bytes.fromhex("2a864886f70d010703")
ID_AUTH_ENVELOPED_DATA = bytes.fromhex("2a864886f70d0109100117")
_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")
_AES256_CBC = bytes.fromhex("608648016503040102")


def recipient_info(issuer_text: bytes = b"Clinic CA") -> bytes:
    """A KeyTransRecipientInfo with an issuer name and serial number, RSA, 256 bytes."""
    issuer = tlv(0x30, tlv(0x31, tlv(0x30, tlv(0x06, bytes.fromhex("550403")) + tlv(0x0C, issuer_text))))
    return tlv(
        0x30,
        tlv(0x02, b"\x00") + tlv(0x30, issuer + tlv(0x02, b"\x01\x23"))
        + tlv(0x30, tlv(0x06, _RSA_ENCRYPTION) + b"\x05\x00") + tlv(0x04, random_bytes(256)),
    )


def encrypted_content_info(content: bytes | None = None) -> bytes:
    algorithm = tlv(0x30, tlv(0x06, _AES256_CBC) + tlv(0x04, random_bytes(16)))
    encrypted = random_bytes(160) if content is None else content
    return tlv(0x30, tlv(0x06, ID_DATA) + algorithm + tlv(0x80, encrypted))


def enveloped_data(
    *, recipients: bytes | None = None, content: bytes | None = None, trailer: bytes = b""
) -> bytes:
    """Return an EnvelopedData SEQUENCE; ``trailer`` adds fields after the content."""
    infos = recipient_info() if recipients is None else recipients
    return tlv(0x30, tlv(0x02, b"\x00") + tlv(0x31, infos) + encrypted_content_info(content) + trailer)


def content_info(oid: bytes, content: bytes) -> bytes:
    return tlv(0x30, tlv(0x06, oid) + tlv(0xA0, content))


ENVELOPED_DER = content_info(ID_ENVELOPED_DATA, enveloped_data())
SMIME_TYPE = (
    b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
)


def auth_enveloped_data() -> bytes:
    """Return an AuthEnvelopedData SEQUENCE (RFC 5083) with a 16-byte MAC."""
    return tlv(
        0x30,
        tlv(0x02, b"\x00") + tlv(0x31, recipient_info()) + encrypted_content_info()
        + tlv(0x04, random_bytes(16)),
    )


AUTH_ENVELOPED_DER = content_info(ID_AUTH_ENVELOPED_DATA, auth_enveloped_data())
SIGNED_DER = content_info(ID_SIGNED_DATA, tlv(0x30, tlv(0x02, b"\x01") + tlv(0x31, b"")))
