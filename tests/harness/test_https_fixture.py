"""The HTTPS fixture serves MTA-STS policy files under the test CA."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from postveil.harness.https import POLICY_PATH, HttpsFixture
from postveil.harness.net import allocate_address
from postveil.harness.pki import TestPKI

POLICY = "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(pki: TestPKI) -> HttpsFixture:
    fixture = HttpsFixture(allocate_address(), pki, port=0).start()
    yield fixture
    fixture.stop()


def fetch(server: HttpsFixture, pki: TestPKI, host: str, path: str = POLICY_PATH) -> bytes:
    """GET ``path`` from ``host`` (SNI and certificate check against the test CA)."""
    context = pki.client_context()
    with socket.create_connection((server.address, server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            tls.sendall(request.encode())
            response = b""
            while chunk := tls.recv(65536):
                response += chunk
    return response


def test_serves_policy_with_valid_certificate(server: HttpsFixture, pki: TestPKI) -> None:
    server.set_policy("example.test", POLICY)

    response = fetch(server, pki, "mta-sts.example.test")

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert b"Content-Type: text/plain" in head
    assert body == POLICY.encode()


def test_wrong_name_certificate_fails_verification(server: HttpsFixture, pki: TestPKI) -> None:
    server.set_policy("example.test", POLICY, certificate_names=("other.test",))

    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(server, pki, "mta-sts.example.test")


def test_status_type_and_redirect(server: HttpsFixture, pki: TestPKI) -> None:
    server.set_policy(
        "example.test", "moved", status=301, content_type="text/html", location="https://elsewhere.test/"
    )

    head = fetch(server, pki, "mta-sts.example.test").partition(b"\r\n\r\n")[0]

    assert head.startswith(b"HTTP/1.0 301")
    assert b"Content-Type: text/html" in head
    assert b"Location: https://elsewhere.test/" in head


def test_unknown_host_and_path_get_404(server: HttpsFixture, pki: TestPKI) -> None:
    server.set_policy("example.test", POLICY)

    assert fetch(server, pki, "mta-sts.example.test", "/other").startswith(b"HTTP/1.0 404")


def test_ca_file_is_written(pki: TestPKI) -> None:
    assert Path(pki.ca_path).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
