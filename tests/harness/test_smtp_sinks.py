"""SMTP sinks record the envelope, the content and the TLS facts of each session."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

import pytest

from postveil.harness.net import allocate_address
from postveil.harness.pki import TestPKI
from postveil.harness.smtp import MailSpool, SmtpSink

MESSAGE = b"From: a@org.test\r\nTo: b@example.test\r\nSubject: sink test\r\n\r\nbody \xc3\xa9\r\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))


def connect(sink: SmtpSink, server_name: str) -> smtplib.SMTP:
    client = smtplib.SMTP(sink.address, sink.port, timeout=10)
    client._host = server_name  # smtplib sends this name as SNI in starttls()
    return client


def test_starttls_records_version_cipher_and_sni(pki: TestPKI) -> None:
    with SmtpSink(allocate_address(), pki, hostname="mx.valid.test", port=0) as sink:
        with connect(sink, "mx.valid.test") as client:
            client.starttls(context=pki.client_context())
            client.sendmail("a@org.test", ["b@example.test", "c@example.test"], MESSAGE)

        received = sink.wait_for(1)[0]

    assert received.mail_from == "a@org.test"
    assert received.rcpt_tos == ("b@example.test", "c@example.test")
    assert received.data == MESSAGE
    assert received.tls_version in ("TLSv1.2", "TLSv1.3")
    assert received.cipher
    assert received.sni == "mx.valid.test"
    assert received.encrypted


def test_sink_without_starttls_records_plaintext(pki: TestPKI) -> None:
    with SmtpSink(allocate_address(), None, hostname="mx.plain.test", tls="none", port=0) as sink:
        with connect(sink, "mx.plain.test") as client:
            client.ehlo()
            assert not client.has_extn("starttls")
            client.sendmail("a@org.test", ["b@example.test"], MESSAGE)

        received = sink.wait_for(1)[0]

    assert received.tls_version is None
    assert not received.encrypted


def test_wrong_name_certificate_fails_verification(pki: TestPKI) -> None:
    with SmtpSink(allocate_address(), pki, hostname="mx.wrong.test", tls="wrong-name", port=0) as sink:
        with connect(sink, "mx.wrong.test") as client:
            with pytest.raises(ssl.SSLCertVerificationError):
                client.starttls(context=pki.client_context())

    assert sink.messages == []


def test_custom_reply_records_nothing(pki: TestPKI) -> None:
    with SmtpSink(allocate_address(), None, tls="none", port=0, reply="451 4.3.0 try later") as sink:
        with connect(sink, "mx.sink.test") as client:
            with pytest.raises(smtplib.SMTPDataError):
                client.sendmail("a@org.test", ["b@example.test"], MESSAGE)

    assert sink.messages == []


def test_wait_for_times_out_with_count(pki: TestPKI) -> None:
    with SmtpSink(allocate_address(), None, tls="none", port=0) as sink:
        with pytest.raises(TimeoutError, match="received 0 message"):
            sink.wait_for(1, timeout=0.2)


def test_spool_numbers_messages_across_sinks(pki: TestPKI, tmp_path: Path) -> None:
    spool = MailSpool(tmp_path / "mail")
    tls_sink = SmtpSink(allocate_address(), pki, hostname="mx.first.test", port=0, spool=spool)
    plain_sink = SmtpSink(allocate_address(), None, hostname="mx.second.test", tls="none", port=0, spool=spool)
    with tls_sink, plain_sink:
        with connect(tls_sink, "mx.first.test") as client:
            client.starttls(context=pki.client_context())
            client.sendmail("a@org.test", ["b@example.test", "c@example.test"], MESSAGE)
        tls_sink.wait_for(1)
        with connect(plain_sink, "mx.second.test") as client:
            client.sendmail("", ["d@example.test"], MESSAGE + b"second\r\n")
        plain_sink.wait_for(1)

    names = sorted(path.name for path in spool.directory.iterdir())
    assert names == [
        "000001-mx.first.test.eml",
        "000001-mx.first.test.envelope",
        "000002-mx.second.test.eml",
        "000002-mx.second.test.envelope",
    ]
    assert (spool.directory / "000001-mx.first.test.eml").read_bytes() == MESSAGE
    assert (spool.directory / "000002-mx.second.test.eml").read_bytes() == MESSAGE + b"second\r\n"
    first = (spool.directory / "000001-mx.first.test.envelope").read_text().splitlines()
    assert f"Sink: mx.first.test {tls_sink.address}:{tls_sink.port}" in first
    assert "Mail-From: <a@org.test>" in first
    assert "Rcpt-To: <b@example.test>" in first
    assert "Rcpt-To: <c@example.test>" in first
    assert any(line.startswith("TLS: TLSv1.") for line in first)
    second = (spool.directory / "000002-mx.second.test.envelope").read_text().splitlines()
    assert "Mail-From: <>" in second
    assert "TLS: none" in second


def test_unwritable_spool_defers_message(tmp_path: Path) -> None:
    spool = MailSpool(tmp_path / "mail")
    spool.directory.rmdir()
    spool.directory.write_text("a file where the spool directory was\n")
    with SmtpSink(allocate_address(), None, tls="none", port=0, spool=spool) as sink:
        with connect(sink, "mx.sink.test") as client:
            with pytest.raises(smtplib.SMTPDataError) as caught:
                client.sendmail("a@org.test", ["b@example.test"], MESSAGE)

    assert caught.value.smtp_code == 451
    assert sink.messages == []
