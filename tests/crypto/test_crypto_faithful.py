"""Every content shape comes out of `openssl cms -decrypt` and `gpg --decrypt` as it went in.

Only the headers moved by design differ: the tag leaves the Subject, the content headers
and the Subject move inside, and the inner Content-Type gains protected-headers="v1".
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
from crypto_fixtures import GpgWorld, Pki, gpg_decrypt, openssl_decrypt
from crypto_messages import EXPECTED_SUBJECT, SHAPES

from postveil.config.portal import PortalSection
from postveil.config.routing import RoutingSection
from postveil.crypto import (
    CertificateStore,
    PgpKeyring,
    RawMessage,
    RenderContext,
    read_triggers,
    render_version,
)
from postveil.crypto.mime import decode_text, to_crlf
from postveil.crypto.protect import is_content_header
from postveil.routing.plan import RecipientGroup, VersionKind

ROUTING = RoutingSection()
ARMOR_RE = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----\r?\n", re.DOTALL)


def _context(pki: Pki, world: GpgWorld) -> RenderContext:
    return RenderContext(
        routing=ROUTING,
        portal=PortalSection(),
        certificates=CertificateStore(str(pki.cert_dir), str(pki.trust_store)),
        keyring=PgpKeyring(str(world.postveil_home)),
    )


def assert_inner_matches(original_raw: bytes, inner_raw: bytes, shape: str) -> None:
    original = RawMessage.parse(original_raw)
    inner = RawMessage.parse(inner_raw)

    assert inner.body == to_crlf(original.body), "body changed"

    inner_fields = [field.raw for field in inner.headers]
    for field in original.headers:
        if not is_content_header(field.name):
            continue
        expected = to_crlf(field.raw)
        if field.lower_name == "content-type":
            marked = [raw for raw in inner_fields if raw.lower().startswith(b"content-type:")]
            assert marked[0].startswith(expected.rstrip(b"\r\n")), "Content-Type changed"
            assert marked[0].endswith(b' protected-headers="v1"\r\n')
        else:
            assert expected in inner_fields, f"{field.name} missing or changed"

    for name in ("From", "To", "Date", "Message-ID"):
        assert [to_crlf(f.raw) for f in original.get_all(name)] == [f.raw for f in inner.get_all(name)]

    subject = decode_text(inner.first_value("Subject") or "")
    assert subject == EXPECTED_SUBJECT[shape]
    assert "[secure]" not in subject.lower()
    assert "[encrypt]" not in subject.lower()


def assert_outer_is_neutral(outer_raw: bytes, original_raw: bytes, content_types: list[str]) -> None:
    outer = RawMessage.parse(outer_raw)
    assert outer.values("Subject") == [ROUTING.outer_subject]
    original = RawMessage.parse(original_raw)
    for name in ("From", "To", "Date", "Message-ID", "Received"):
        assert [f.raw for f in outer.get_all(name)] == [f.raw for f in original.get_all(name)]
    # Only the encryption's own content headers stay outside.
    assert outer.values("MIME-Version") == ["1.0"]
    assert [v.split(";")[0] for v in outer.values("Content-Type")] == content_types
    outer_content = [f.name.lower() for f in outer.headers if is_content_header(f.name)]
    assert len(outer_content) == len(set(outer_content))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_smime_roundtrip_per_shape(shape: str, pki: Pki, gpg_world: GpgWorld, tmp_path: Path) -> None:
    original = SHAPES[shape]
    message = RawMessage.parse(original)
    context = _context(pki, gpg_world)
    lookup = context.certificates.lookup("alice@example.org")
    group = RecipientGroup(VersionKind.SMIME, ("alice@example.org",), (lookup.status.fingerprint,), False)

    version = render_version(message, group, read_triggers(message, ROUTING), context)

    parsed = email.message_from_bytes(version.raw, policy=email.policy.default)
    assert parsed.get_content_type() == "application/pkcs7-mime"
    assert parsed.get_param("smime-type") == "enveloped-data"
    assert parsed.get_param("name") == "smime.p7m"
    assert_outer_is_neutral(version.raw, original, ["application/pkcs7-mime"])
    inner = openssl_decrypt(version.raw, pki.alice, tmp_path)
    assert_inner_matches(original, inner, shape)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_pgp_roundtrip_per_shape(shape: str, pki: Pki, gpg_world: GpgWorld) -> None:
    original = SHAPES[shape]
    message = RawMessage.parse(original)
    context = _context(pki, gpg_world)
    group = RecipientGroup(VersionKind.PGP, ("alice@example.org",), (gpg_world.fingerprints["alice"],), False)

    version = render_version(message, group, read_triggers(message, ROUTING), context)

    parsed = email.message_from_bytes(version.raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/encrypted"
    assert parsed.get_param("protocol") == "application/pgp-encrypted"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["application/pgp-encrypted", "application/octet-stream"]
    assert parts[0].get_content().strip() == b"Version: 1"
    assert_outer_is_neutral(version.raw, original, ["multipart/encrypted"])
    armored = ARMOR_RE.search(version.raw)
    assert armored is not None
    inner = gpg_decrypt(gpg_world, armored.group(0))
    assert_inner_matches(original, inner, shape)


def test_lf_input_becomes_canonical_crlf(pki: Pki, gpg_world: GpgWorld, tmp_path: Path) -> None:
    original = SHAPES["8bit"].replace(b"\r\n", b"\n")
    message = RawMessage.parse(original)
    context = _context(pki, gpg_world)
    lookup = context.certificates.lookup("alice@example.org")
    group = RecipientGroup(VersionKind.SMIME, ("alice@example.org",), (lookup.status.fingerprint,), False)

    version = render_version(message, group, read_triggers(message, ROUTING), context)

    inner = openssl_decrypt(version.raw, pki.alice, tmp_path)
    assert RawMessage.parse(inner).body == SHAPES["8bit"].split(b"\r\n\r\n", 1)[1]
