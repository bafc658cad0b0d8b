"""Text dressed up as encrypted mail must not count as encrypted, and real encrypted
mail from gpg, openssl and postveil must.

The bypass cases carry readable text in messages shaped like encrypted mail. Most of
them counted as encrypted under the earlier check of labels and shapes, so they would
have left in clear.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from crypto_fixtures import GpgWorld, Pki, gpg
from encrypted_samples import (
    ARMORED,
    AUTH_ENVELOPED_DER,
    ENVELOPED_DER,
    ID_DATA,
    ID_ENVELOPED_DATA,
    ID_SIGNED_DATA,
    PGP_MIME_TYPE,
    PGP_PACKETS,
    PHI,
    SMIME_TYPE,
    armor,
    content_info,
    encrypted_content_info,
    enveloped_data,
    old_packet,
    packet,
    pgp_mime,
    pkesk,
    random_bytes,
    recipient_info,
    seipd,
    tlv,
)

from postveil.config.routing import RoutingSection
from postveil.crypto import EncryptionCheck, PgpKeyring, RawMessage, check_encryption
from postveil.crypto.ciphertext import NotEncrypted, check_random
from postveil.crypto.pgp import pgp_mime_body
from postveil.crypto.smime import encrypt_entity, smime_headers, wrap_base64

HEAD = b"From: doc@sender.example\r\nTo: alice@example.org\r\nSubject: Results\r\nMIME-Version: 1.0\r\n"
INLINE = b"Content-Type: text/plain; charset=us-ascii\r\n"
SECOND_LINE = ARMORED.split(b"\r\n")[3]
INTERLEAVED = b"".join(bytes([byte]) + random_bytes(1) for byte in PHI * 4)
"""PHI with a random byte after each character: readable in a hex dump."""


def _check(headers: bytes, body: bytes, routing: RoutingSection | None = None) -> EncryptionCheck:
    return check_encryption(RawMessage.parse(HEAD + headers + b"\r\n" + body), routing)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param(INLINE, ARMORED, id="inline"),
        pytest.param(INLINE, armor(PGP_PACKETS, b"Version: GnuPG v2\r\nComment: https://gnupg.org\r\n"),
                     id="inline-version-comment"),
        pytest.param(INLINE, armor(PGP_PACKETS, b"Version: PGP Desktop 10.2.0 (Build 1672)\r\nCharset: utf-8\r\n"),
                     id="inline-pgp-desktop"),
        pytest.param(INLINE, armor(PGP_PACKETS) + b"\r\n" + armor(pkesk() + pkesk() + seipd()), id="two-blocks"),
        pytest.param(INLINE, armor(old_packet(1, pkesk()[6:]) + seipd()), id="old-format-packet"),
        pytest.param(INLINE, armor(packet(10, b"PGP") + PGP_PACKETS), id="marker-packet"),
        pytest.param(INLINE, armor(PGP_PACKETS).replace(b"\r\n-----END", b"\r\n=njUN\r\n-----END"), id="checksum"),
        pytest.param(PGP_MIME_TYPE, pgp_mime(), id="pgp-mime"),
        pytest.param(PGP_MIME_TYPE, pgp_mime(preamble=b""), id="pgp-mime-no-preamble"),
        pytest.param(b"Content-Language: en-US\r\n" + PGP_MIME_TYPE, pgp_mime(), id="content-language"),
        pytest.param(b"Content-Language: zh-Hant-TW, de\r\n" + INLINE, ARMORED, id="content-languages"),
        pytest.param(SMIME_TYPE, base64.encodebytes(ENVELOPED_DER), id="smime"),
        pytest.param(SMIME_TYPE, base64.encodebytes(AUTH_ENVELOPED_DER), id="smime-auth-enveloped"),
    ],
)
def test_encrypted_samples_count(headers: bytes, body: bytes) -> None:
    check = _check(headers, body)

    assert check.scheme is not None, check.reason


ARMOR_CASES = [
    pytest.param(armor(PHI * 3), "packet-header", id="base64-of-plaintext"),
    pytest.param(armor(PGP_PACKETS, b"Comment: " + PHI[:40] + b"\r\n"), "armor-header", id="comment-text"),
    pytest.param(armor(PGP_PACKETS, b"Comment: https://jane-roe.example/mrn-445566\r\n"), "armor-header",
                 id="comment-url-path"),
    pytest.param(armor(PGP_PACKETS, b"Version: " + PHI + b"\r\n"), "armor-header", id="long-version"),
    pytest.param(armor(PGP_PACKETS, b"Version: GnuPG v2\r\n" * 2), "armor-header", id="repeated-header"),
    pytest.param(armor(PGP_PACKETS, b"Version: Roe diabetes\r\n"), "armor-header", id="version-without-number"),
    pytest.param(armor(PGP_PACKETS, b"Hash: " + PHI[:30] + b"\r\n"), "armor-header", id="hash-header"),
    pytest.param(armor(PGP_PACKETS, b"MessageID: " + PHI[:30] + b"\r\n"), "armor-header", id="messageid-header"),
    pytest.param(armor(PGP_PACKETS, b"X-Note: " + PHI[:30] + b"\r\n"), "armor-header", id="unknown-header"),
    pytest.param(PHI + b"\r\n" + ARMORED, "armor-text", id="text-before"),
    pytest.param(ARMORED + PHI + b"\r\n", "armor-text", id="text-after"),
    pytest.param(ARMORED + PHI + b"\r\n" + ARMORED, "armor-text", id="text-between"),
    pytest.param(ARMORED.replace(b"-----END", b"=njUN\r\n" + PHI + b"\r\n-----END"), "armor-text",
                 id="text-after-checksum"),
    pytest.param(ARMORED.replace(SECOND_LINE, b"Patient Jane Roe MRN 445566"), "armor-text", id="text-line"),
    pytest.param(armor(pkesk() + seipd(PHI * 3)), "readable-ciphertext", id="seipd-of-plaintext"),
    pytest.param(armor(pkesk() + seipd(INTERLEAVED)), "readable-ciphertext", id="seipd-interleaved"),
    pytest.param(armor(packet(1, b"\x03" + PHI * 3) + seipd()), "readable-ciphertext", id="pkesk-of-plaintext"),
    pytest.param(armor(pkesk() + packet(11, b"b\x00\x00\x00\x00\x00" + PHI)), "packet-sequence",
                 id="literal-packet"),
    pytest.param(armor(seipd()), "packet-sequence", id="no-session-key"),
    pytest.param(armor(PGP_PACKETS + packet(11, b"b\x00\x00\x00\x00\x00" + PHI)), "packet-sequence",
                 id="packet-after-data"),
    pytest.param(armor(PGP_PACKETS + packet(21, PHI)), "readable-ciphertext", id="padding-of-plaintext"),
    pytest.param(armor(pkesk()), "packet-sequence", id="session-key-only"),
    pytest.param(armor(PGP_PACKETS[:-20]), "packet-header", id="cut-off"),
    pytest.param(armor(PGP_PACKETS + PHI), "packet-header", id="bytes-after-packets"),
    pytest.param(armor(packet(1, b"\x09" + random_bytes(200)) + seipd()), "packet-header", id="pkesk-version"),
    pytest.param(armor(pkesk() + packet(18, b"\x07" + random_bytes(200))), "packet-header", id="seipd-version"),
]


@pytest.mark.parametrize(("body", "code"), ARMOR_CASES)
def test_inline_bypass_not_counted(body: bytes, code: str) -> None:
    check = _check(INLINE, body)

    assert check.scheme is None
    assert check.code == code, check.reason


@pytest.mark.parametrize(("body", "code"), ARMOR_CASES)
def test_pgp_mime_armor_bypass_not_counted(body: bytes, code: str) -> None:
    check = _check(PGP_MIME_TYPE, pgp_mime(body))

    assert check.scheme is None
    assert check.code == code, check.reason


MIME_CASES = [
    pytest.param(PGP_MIME_TYPE, pgp_mime(preamble=PHI + b"\r\n"), "notice-text", id="preamble-line"),
    pytest.param(PGP_MIME_TYPE, pgp_mime(preamble=b"This is an encrypted message\r\n" + PHI + b"\r\n"),
                 "notice-text", id="preamble-lines"),
    pytest.param(PGP_MIME_TYPE, pgp_mime(epilogue=PHI + b"\r\n"), "notice-text", id="epilogue"),
    pytest.param(PGP_MIME_TYPE, pgp_mime(control_headers=b"Content-Description: " + PHI + b"\r\n"),
                 "notice-text", id="control-description"),
    pytest.param(PGP_MIME_TYPE, pgp_mime(control_headers=b"X-Note: " + PHI + b"\r\n"),
                 "content-header", id="control-extra-header"),
    pytest.param(PGP_MIME_TYPE, pgp_mime(control_headers=b"Content-ID: <" + PHI[:20] + b">\r\n"),
                 "content-header", id="control-content-id"),
    pytest.param(PGP_MIME_TYPE,
                 pgp_mime(data_headers=b'Content-Type: application/octet-stream; name="Jane Roe MRN 445566.asc"'
                          b"\r\n"), "notice-text", id="data-name"),
    pytest.param(PGP_MIME_TYPE,
                 pgp_mime(data_headers=b"Content-Type: application/octet-stream; x-note=diabetes\r\n"),
                 "content-header", id="data-parameter"),
    pytest.param(PGP_MIME_TYPE,
                 pgp_mime(data_headers=b"Content-Type: application/octet-stream\r\n"
                          b'Content-Disposition: inline; filename="roe-diabetes.asc"\r\n'),
                 "notice-text", id="data-filename"),
    pytest.param(PGP_MIME_TYPE,
                 pgp_mime(data_headers=b"Content-Type: application/octet-stream\r\nComments: " + PHI + b"\r\n"),
                 "content-header", id="data-extra-header"),
    pytest.param(PGP_MIME_TYPE,
                 pgp_mime(extra_part=b"--x\r\nContent-Type: text/plain\r\n\r\n" + PHI + b"\r\n"),
                 "mime-structure", id="third-part"),
    pytest.param(PGP_MIME_TYPE,
                 pgp_mime(extra_part=b"--x\r\nContent-Type: application/octet-stream\r\n\r\n" + ARMORED),
                 "mime-structure", id="third-armored-part"),
    pytest.param(PGP_MIME_TYPE, pgp_mime().replace(b"Version: 1\r\n", b"Version: 1\r\n" + PHI + b"\r\n"),
                 "mime-structure", id="control-text"),
    pytest.param(b"X-Patient: Jane Roe\r\n" + PGP_MIME_TYPE, pgp_mime(), "outer-header", id="outer-x-header"),
    pytest.param(b"Keywords: diabetes\r\n" + INLINE, ARMORED, "outer-header", id="outer-keywords"),
    pytest.param(b"Thread-Topic: Jane Roe\r\n" + SMIME_TYPE, base64.encodebytes(ENVELOPED_DER),
                 "outer-header", id="outer-thread-topic"),
    pytest.param(b"Content-Description: " + PHI + b"\r\n" + PGP_MIME_TYPE, pgp_mime(), "notice-text",
                 id="outer-description"),
    pytest.param(PGP_MIME_TYPE.replace(b"boundary=x", b"boundary=x; x-note=diabetes"), pgp_mime(),
                 "content-header", id="outer-parameter"),
    pytest.param(b"Content-Location: http://roe.example/\r\n" + SMIME_TYPE, base64.encodebytes(ENVELOPED_DER),
                 "content-header", id="outer-content-location"),
    pytest.param(b"Content-Language: de-JaneRoe\r\n" + PGP_MIME_TYPE, pgp_mime(), "content-header",
                 id="outer-language-word"),
    pytest.param(SMIME_TYPE.replace(b"name=smime.p7m", b"name=jane-roe.p7m"),
                 base64.encodebytes(ENVELOPED_DER), "notice-text", id="smime-name"),
    pytest.param(b"Content-Patient: Roe\r\nContent-Patient: Roe\r\n" + PGP_MIME_TYPE, pgp_mime(),
                 "content-header", id="outer-repeated-unknown"),
]


@pytest.mark.parametrize(("headers", "body", "code"), MIME_CASES)
def test_mime_bypass_not_counted(headers: bytes, body: bytes, code: str) -> None:
    check = _check(headers, body)

    assert check.scheme is None
    assert check.code == code, check.reason


@pytest.mark.parametrize(
    ("der", "code"),
    [
        pytest.param(content_info(ID_SIGNED_DATA, tlv(0x30, tlv(0x04, PHI))), "cms-content-type", id="signed-data"),
        pytest.param(content_info(ID_DATA, tlv(0x04, PHI)), "cms-content-type", id="data"),
        pytest.param(tlv(0x30, tlv(0x06, ID_ENVELOPED_DATA) + tlv(0xA0, PHI)), "cms-structure",
                     id="oid-then-text"),
        pytest.param(b"\x30\x80\x06\x09" + ID_ENVELOPED_DATA + b"\xa0\x80" + PHI, "cms-structure",
                     id="indefinite-oid-then-text"),
        pytest.param(content_info(ID_ENVELOPED_DATA, enveloped_data(content=PHI * 3)), "readable-ciphertext",
                     id="content-of-plaintext"),
        pytest.param(content_info(ID_ENVELOPED_DATA, enveloped_data(content=INTERLEAVED)), "readable-ciphertext",
                     id="content-interleaved"),
        pytest.param(content_info(ID_ENVELOPED_DATA, enveloped_data(trailer=tlv(0xA1, tlv(0x30, tlv(0x0C, PHI))))),
                     "cms-structure", id="unprotected-attributes"),
        pytest.param(ENVELOPED_DER + PHI, "cms-structure", id="text-after"),
        pytest.param(content_info(ID_ENVELOPED_DATA, enveloped_data(recipients=recipient_info(PHI * 3))),
                     "cms-structure", id="issuer-of-text"),
        pytest.param(content_info(ID_ENVELOPED_DATA, enveloped_data(recipients=b"")), "cms-structure",
                     id="no-recipient"),
        pytest.param(content_info(ID_ENVELOPED_DATA, tlv(0x30, tlv(0x02, b"\x00") + tlv(0x31, recipient_info())
                                                       + tlv(0x30, encrypted_content_info()[2:13]))),
                     "cms-structure", id="no-encrypted-content"),
        pytest.param(ENVELOPED_DER[:-30], "cms-structure", id="cut-off"),
        pytest.param(PHI * 3, "cms-structure", id="plaintext"),
    ],
)
def test_smime_bypass_not_counted(der: bytes, code: str) -> None:
    check = _check(SMIME_TYPE, base64.encodebytes(der))

    assert check.scheme is None
    assert check.code == code, check.reason


@pytest.mark.parametrize(
    ("value", "counted"),
    [
        (b"1.0", True),
        (b"1.0 (Mac OS X Mail 16.0 \\(3731.500.231\\))", True),
        (b"1.0 (Jane Roe, diabetes)", False),
        (b"2.0", False),
    ],
)
def test_mime_version_comment(value: bytes, counted: bool) -> None:
    head = HEAD.replace(b"MIME-Version: 1.0", b"MIME-Version: " + value)
    raw = head + PGP_MIME_TYPE + b"\r\n" + pgp_mime()

    check = check_encryption(RawMessage.parse(raw))

    assert (check.scheme is not None) is counted, check.reason


def test_smime_bad_base64_not_counted() -> None:
    check = _check(SMIME_TYPE, b"Patient Jane Roe, MRN 445566\r\n")

    assert check.scheme is None
    assert check.code == "transfer-encoding"


def test_allowed_outer_header_counts() -> None:
    routing = RoutingSection(outer_headers_allowed=["X-Clinic-Note"])

    assert _check(b"X-Clinic-Note: reviewed\r\n" + PGP_MIME_TYPE, pgp_mime()).code == "outer-header"
    assert _check(b"X-Clinic-Note: reviewed\r\n" + PGP_MIME_TYPE, pgp_mime(), routing).scheme == "pgp"


@pytest.mark.parametrize(
    "field",
    [
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
        b"X-Mailer: Apple Mail (2.3826.300.87.4.3)",
        b"X-Mailer: Microsoft Outlook 16.0",
        b"Thread-Index: AdtH1x2Vq8d3lq0mRmu0XjJc5z1R2A==",
        b"Thread-Topic: Results",
        b"Thread-Topic: =?utf-8?q?results?=",
        b"X-MS-Has-Attach: yes",
        b"X-MS-TNEF-Correlator:",
        b"Importance: high",
        b"X-Priority: 3 (Normal)",
        b"Accept-Language: en-US",
        b"Accept-Language: de-DE, en-US",
    ],
)
def test_client_written_fields_count(field: bytes) -> None:
    """Mail programs add these on their own, so encrypted mail from Thunderbird or
    Outlook still counts."""
    assert _check(field + b"\r\n" + PGP_MIME_TYPE, pgp_mime()).scheme == "pgp"


@pytest.mark.parametrize(
    "field",
    [
        b"User-Agent: " + b"x" * 200,
        b"X-Mailer: Jane Roe <jane@example.org>",
        b"Thread-Index: Jane Roe diabetes",
        b"Thread-Topic: Results for Jane Roe",
        b"Thread-Topic:",
        b"X-MS-Has-Attach: Jane Roe",
        b"Importance: Jane Roe",
        b"X-Priority: 1 (Jane Roe)",
        b"Accept-Language: Jane Roe",
    ],
)
def test_client_fields_with_other_text_not_counted(field: bytes) -> None:
    assert _check(field + b"\r\n" + PGP_MIME_TYPE, pgp_mime()).code == "outer-header"


def test_trigger_header_and_bcc_removed_so_count() -> None:
    headers = b"X-Postveil-Protect: yes\r\nBcc: carol@example.org\r\n" + PGP_MIME_TYPE

    assert _check(headers, pgp_mime()).scheme == "pgp"


def test_plain_text_not_labelled() -> None:
    check = _check(INLINE, b"Hello\r\n")

    assert check.code == "none"
    assert not check.labelled


@pytest.mark.parametrize(("headers", "body", "code"), MIME_CASES)
def test_reason_has_no_content(headers: bytes, body: bytes, code: str) -> None:
    reason = _check(headers, body).reason.lower()

    for word in ("jane", "roe", "445566", "diabetes", "patient"):
        assert word not in reason


@pytest.mark.parametrize("size", [32, 64, 200, 5000, 300_000])
def test_random_bytes_pass_check(size: int) -> None:
    check_random(random_bytes(size), "test data")


def test_text_fails_check() -> None:
    with pytest.raises(NotEncrypted):
        check_random(PHI, "test data")


# Real tools: what gpg 2.2, openssl cms and postveil itself write must count.


def _gpg_encrypt(world: GpgWorld, *args: str) -> bytes:
    return gpg(world.recipient_home, "--armor", "--trust-model", "always", "--auto-key-locate", "local",
               *args, input=b"Patient Jane Roe, MRN 445566\n" * 50).stdout


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--encrypt", "-r", "alice"), id="cv25519"),
        pytest.param(("--encrypt", "-r", "alice", "-r", "bob", "-r", "erin"), id="three-recipients"),
        pytest.param(("--symmetric", "--passphrase", "secret"), id="symmetric"),
        pytest.param(("--encrypt", "--emit-version", "--comment", "https://gnupg.org", "-r", "bob"),
                     id="version-comment"),
        pytest.param(("--encrypt", "--compress-algo", "none", "--force-mdc", "-r", "alice"), id="uncompressed"),
        pytest.param(("--encrypt", "--sign", "-r", "alice", "-u", "bob"), id="signed-and-encrypted"),
    ],
)
def test_gpg_output_counts(gpg_world: GpgWorld, args: tuple[str, ...]) -> None:
    named = tuple(gpg_world.fingerprints.get(arg, arg) for arg in args)
    armored = _gpg_encrypt(gpg_world, *named)

    inline = _check(INLINE, armored)
    mime = _check(PGP_MIME_TYPE, pgp_mime(armored))

    assert inline.scheme == "pgp", inline.reason
    assert mime.scheme == "pgp", mime.reason


def test_gpg_rsa_and_large_file_count(gpg_world: GpgWorld, tmp_path: Path) -> None:
    """An RSA key, and a file large enough for gpg to write partial body lengths."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg(home, "--quick-gen-key", "Rsa <rsa@example.org>", "rsa2048", "encrypt", "never")
    data = random_bytes(300_000)
    armored = gpg(home, "--armor", "--trust-model", "always", "--auto-key-locate", "local",
                  "--encrypt", "-r", "rsa@example.org", input=data).stdout
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)

    check = _check(INLINE, armored)

    assert check.scheme == "pgp", check.reason
    assert check.reason == "inline PGP with 1 public-key session key packet, integrity-protected data packet"


def _openssl_encrypt(pki: Pki, tmp_path: Path, *args: str) -> bytes:
    source = tmp_path / "entity.eml"
    source.write_bytes(b"Content-Type: text/plain\r\n\r\nPatient Jane Roe, MRN 445566\r\n" * 20)
    result = subprocess.run(
        ["openssl", "cms", "-encrypt", "-in", str(source), "-recip", str(pki.alice.cert_path), *args],
        capture_output=True, check=True, timeout=60,
    )
    return result.stdout


@pytest.mark.parametrize(
    ("args", "name"),
    [
        pytest.param(("-aes256",), "EnvelopedData", id="aes256-cbc"),
        pytest.param(("-aes256", "-stream"), "EnvelopedData", id="aes256-cbc-stream"),
        pytest.param(("-aes-256-gcm",), "AuthEnvelopedData", id="aes256-gcm"),
        pytest.param(("-aes-256-gcm", "-stream"), "AuthEnvelopedData", id="aes256-gcm-stream"),
        pytest.param(("-aes128", "-keyopt", "rsa_padding_mode:oaep"), "EnvelopedData", id="rsa-oaep"),
    ],
)
def test_openssl_cms_output_counts(pki: Pki, tmp_path: Path, args: tuple[str, ...], name: str) -> None:
    output = _openssl_encrypt(pki, tmp_path, *args)

    head = HEAD.replace(b"MIME-Version: 1.0\r\n", b"")
    check = check_encryption(RawMessage.parse(head + output.replace(b"\n", b"\r\n")))

    assert check.scheme == "smime", check.reason
    assert check.reason == f"S/MIME with CMS {name}"


def test_openssl_cms_der_counts(pki: Pki, tmp_path: Path) -> None:
    der = _openssl_encrypt(pki, tmp_path, "-aes256", "-outform", "DER")
    headers = SMIME_TYPE.replace(b"base64", b"binary")

    assert _check(headers, der).scheme == "smime"


def test_postveil_smime_output_counts(pki: Pki) -> None:
    encrypted = encrypt_entity(b"Content-Type: text/plain\r\n\r\nPatient Jane Roe\r\n", [pki.alice.certificate])
    headers = b"".join(f"{name}: {value}\r\n".encode() for name, value in smime_headers() if name != "MIME-Version")

    check = _check(headers, wrap_base64(encrypted))

    assert check.scheme == "smime", check.reason


def test_postveil_pgp_output_counts(gpg_world: GpgWorld) -> None:
    keyring = PgpKeyring(str(gpg_world.postveil_home))
    armored = keyring.encrypt(b"Content-Type: text/plain\r\n\r\nPatient Jane Roe\r\n", [gpg_world.fingerprints["alice"]])
    content_type, body = pgp_mime_body(armored)

    check = _check(f"Content-Type: {content_type}\r\n".encode(), body)

    assert check.scheme == "pgp", check.reason
    assert check.code == "pgp-mime"
