"""Versions travel through the private Postfix to SMTP sinks and still decrypt to the
original, for every content shape.

The versions are submitted to Postfix's re-injection listener (no milters), which is the
path the milter uses for every group except the one kept in the original transaction.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from crypto_fixtures import Pki, gpg
from crypto_messages import EXPECTED_SUBJECT, SHAPES
from test_crypto_faithful import assert_inner_matches

from postveil.config.portal import PortalSection
from postveil.config.routing import RoutingSection
from postveil.crypto import CertificateStore, PgpKeyring, RawMessage, RenderContext
from postveil.crypto.mime import decode_text
from postveil.crypto.pipeline import TlsRequirement, process_message
from postveil.harness.postfix import PrivatePostfix
from postveil.harness.pytest_plugin import unique_domain
from postveil.harness.world import TestDomain, World
from postveil.routing import Method, VersionKind

pytestmark = pytest.mark.postfix

ARMOR_RE = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----\r?\n", re.DOTALL)


@dataclass
class Setup:
    tls: TestDomain
    pgp: TestDomain
    smime: TestDomain
    portal: TestDomain
    plain: TestDomain
    context: RenderContext
    gpg_home: Path
    smime_leaf: object


@pytest.fixture(scope="module")
def setup(world: World, postfix: PrivatePostfix, pki: Pki, tmp_path_factory: pytest.TempPathFactory):
    domains = {name: world.add_domain(unique_domain(f"crypto-{name}")) for name in ("tls", "pgp", "smime", "portal", "plain")}
    base = tmp_path_factory.mktemp("delivery")

    gpg_home = base / "recipient-gnupg"
    gpg_home.mkdir(mode=0o700)
    address = f"bob@{domains['pgp'].name}"
    gpg(gpg_home, "--quick-gen-key", f"Bob <{address}>", "future-default", "default", "never")
    postveil_home = base / "postveil-gnupg"
    postveil_home.mkdir(mode=0o700)
    PgpKeyring(str(postveil_home)).import_keys(gpg(gpg_home, "--armor", "--export").stdout)

    leaf = pki.issue("delivery-carol", [f"carol@{domains['smime'].name}"], install=False)
    cert_dir = base / "certs"
    cert_dir.mkdir()
    (cert_dir / "carol.pem").write_bytes(leaf.cert_path.read_bytes())

    context = RenderContext(
        # The shapes carry [secure], so this list lets a TLS-enforcing domain take tls.
        routing=RoutingSection(methods={"escalated": ["tls", "pgp", "smime", "portal"]}),
        portal=PortalSection(intake_address=f"intake@{domains['portal'].name}"),
        certificates=CertificateStore(str(cert_dir), str(pki.trust_store)),
        keyring=PgpKeyring(str(postveil_home)),
    )
    yield Setup(**domains, context=context, gpg_home=gpg_home, smime_leaf=leaf)
    for home in (gpg_home, postveil_home):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def _addressed(original: bytes, recipients: list[str]) -> bytes:
    return re.sub(rb"(?m)^To: [^\r\n]*", b"To: " + ", ".join(recipients).encode(), original, count=1)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_sink_gets_right_form_once(shape: str, setup: Setup, postfix: PrivatePostfix, tmp_path: Path) -> None:
    recipients = {
        "tls": f"alice@{setup.tls.name}",
        "pgp": f"bob@{setup.pgp.name}",
        "smime": f"carol@{setup.smime.name}",
        "portal": f"dave@{setup.plain.name}",
    }
    original = _addressed(SHAPES[shape], list(recipients.values()))
    before = {name: len(getattr(setup, name).sink.messages) for name in ("tls", "pgp", "smime", "portal", "plain")}

    outcome = process_message(
        original,
        queue_id=f"T-{shape}",
        sender="doc@sender.example",
        recipients=list(recipients.values()),
        verdict=None,
        tls={recipients["tls"]: TlsRequirement(True, "MTA-STS policy in enforce mode")},
        context=setup.context,
    )
    methods = {d.recipient: d.method for d in outcome.decisions}
    assert methods == {
        recipients["tls"]: Method.TLS,
        recipients["pgp"]: Method.PGP,
        recipients["smime"]: Method.SMIME,
        recipients["portal"]: Method.PORTAL,
    }

    for version in outcome.versions:
        result = postfix.send(
            version.raw,
            "doc@sender.example",
            version.envelope_recipients,
            port=postfix.reinject_port,
            smtputf8=version.needs_smtputf8,
        )
        assert result.code == 250, result.reply

    tls_copy = setup.tls.sink.wait_for(before["tls"] + 1)[-1]
    pgp_copy = setup.pgp.sink.wait_for(before["pgp"] + 1)[-1]
    smime_copy = setup.smime.sink.wait_for(before["smime"] + 1)[-1]
    portal_copy = setup.portal.sink.wait_for(before["portal"] + 1)[-1]

    assert tls_copy.rcpt_tos == (recipients["tls"],)
    assert tls_copy.encrypted
    cleartext = RawMessage.parse(tls_copy.data)
    original_body = RawMessage.parse(original).body
    if shape == "long-lines":
        # Postfix's SMTP client breaks lines over smtp_line_length_limit (998) in
        # cleartext mail; only the encrypted copies keep such lines whole.
        assert cleartext.body != original_body
        assert re.sub(rb"\r\n ?", b"", cleartext.body) == re.sub(rb"\r\n", b"", original_body)
    else:
        # SMTP ends the data with a line break, so a body without one gains it.
        expected = original_body if original_body.endswith(b"\r\n") else original_body + b"\r\n"
        assert cleartext.body == expected
    assert decode_text(cleartext.first_value("Subject") or "") == EXPECTED_SUBJECT[shape]

    assert pgp_copy.rcpt_tos == (recipients["pgp"],)
    armored = ARMOR_RE.search(pgp_copy.data)
    assert armored is not None
    inner = gpg(setup.gpg_home, "--decrypt", input=armored.group(0)).stdout
    assert_inner_matches(original, inner, shape)

    assert smime_copy.rcpt_tos == (recipients["smime"],)
    source = tmp_path / "smime.eml"
    source.write_bytes(smime_copy.data)
    inner = subprocess.run(
        ["openssl", "cms", "-decrypt", "-in", str(source), "-recip", str(setup.smime_leaf.cert_path),
         "-inkey", str(setup.smime_leaf.key_path), "-binary"],
        capture_output=True, check=True, timeout=60,
    ).stdout
    assert_inner_matches(original, inner, shape)

    assert portal_copy.rcpt_tos == (f"intake@{setup.portal.name}",)
    assert RawMessage.parse(portal_copy.data).values("X-Postveil-Portal-Recipient") == [recipients["portal"]]

    assert len(setup.plain.sink.messages) == before["plain"]
    for name in ("tls", "pgp", "smime", "portal"):
        assert len(getattr(setup, name).sink.messages) == before[name] + 1, f"{name} sink count"


def test_bcc_copy_separate_through_postfix(setup: Setup, postfix: PrivatePostfix, tmp_path: Path) -> None:
    to_address = f"carol@{setup.smime.name}"
    bcc_address = f"bob@{setup.pgp.name}"
    original = (
        f"From: doc@sender.example\r\nTo: {to_address}\r\nSubject: [secure] referral\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee attached\r\n"
    ).encode()
    before = {"pgp": len(setup.pgp.sink.messages), "smime": len(setup.smime.sink.messages)}

    outcome = process_message(
        original,
        queue_id="T-bcc",
        sender="doc@sender.example",
        recipients=[to_address, bcc_address],
        verdict=None,
        tls={},
        context=setup.context,
    )
    assert [(v.group.kind, v.group.recipients, v.group.bcc) for v in outcome.versions] == [
        (VersionKind.SMIME, (to_address,), False),
        (VersionKind.PGP, (bcc_address,), True),
    ]
    for version in outcome.versions:
        result = postfix.send(version.raw, "doc@sender.example", version.envelope_recipients,
                              port=postfix.reinject_port)
        assert result.code == 250, result.reply

    bcc_copy = setup.pgp.sink.wait_for(before["pgp"] + 1)[-1]
    to_copy = setup.smime.sink.wait_for(before["smime"] + 1)[-1]
    assert bcc_copy.rcpt_tos == (bcc_address,)
    assert to_copy.rcpt_tos == (to_address,)
    armored = ARMOR_RE.search(bcc_copy.data)
    assert armored is not None
    inner = gpg(setup.gpg_home, "--decrypt", input=armored.group(0)).stdout
    assert inner.endswith(b"\r\n\r\nsee attached\r\n")
    source = tmp_path / "to.eml"
    source.write_bytes(to_copy.data)
    to_inner = subprocess.run(
        ["openssl", "cms", "-decrypt", "-in", str(source), "-recip", str(setup.smime_leaf.cert_path),
         "-inkey", str(setup.smime_leaf.key_path), "-binary"],
        capture_output=True, check=True, timeout=60,
    ).stdout
    assert bcc_address.encode() not in to_copy.data
    assert bcc_address.encode() not in to_inner
    assert b"Subject: referral\r\n" in to_inner
