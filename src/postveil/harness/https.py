"""An HTTPS server for MTA-STS policy files (``/.well-known/mta-sts.txt``).

One server on one loopback address serves every ``mta-sts.<domain>`` host the test
defines. The certificate is chosen per SNI name, so a host can present a valid
certificate or one for the wrong name. Each host can also answer with another
status, content type, a redirect, an oversized body or a delay.
"""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from dataclasses import dataclass

from postveil.harness.net import assert_loopback
from postveil.harness.pki import TestPKI

POLICY_PATH = "/.well-known/mta-sts.txt"


@dataclass
class PolicyResponse:
    body: bytes
    status: int = 200
    content_type: str = "text/plain"
    location: str | None = None
    delay: float = 0.0
    certificate_names: tuple[str, ...] | None = None
    """Names on the certificate presented for this host; None means the host itself."""


class HttpsFixture:
    """Threaded HTTPS server presenting test-CA certificates chosen by SNI."""

    def __init__(self, address: str, pki: TestPKI, port: int = 443) -> None:
        assert_loopback(address)
        self.address = address
        self.port = port
        self.pki = pki
        self.requests: list[tuple[str, str]] = []
        self._hosts: dict[str, PolicyResponse] = {}
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    def set_policy(
        self,
        domain: str,
        text: str | bytes,
        *,
        status: int = 200,
        content_type: str = "text/plain",
        location: str | None = None,
        delay: float = 0.0,
        certificate_names: tuple[str, ...] | None = None,
    ) -> None:
        """Serve ``text`` at https://mta-sts.<domain>/.well-known/mta-sts.txt."""
        body = text.encode() if isinstance(text, str) else text
        host = f"mta-sts.{domain}".lower()
        with self._lock:
            self._hosts[host] = PolicyResponse(
                body, status, content_type, location, delay, certificate_names
            )

    def remove_policy(self, domain: str) -> None:
        with self._lock:
            self._hosts.pop(f"mta-sts.{domain}".lower(), None)

    def _context_for(self, names: tuple[str, ...]) -> ssl.SSLContext:
        with self._lock:
            if names not in self._contexts:
                self._contexts[names] = self.pki.server_context(*names)
            return self._contexts[names]

    def _select_certificate(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        host = (server_name or "").lower()
        with self._lock:
            response = self._hosts.get(host)
        names = response.certificate_names if response and response.certificate_names else (host or "unknown.invalid",)
        sslobj.context = self._context_for(names)

    def start(self) -> HttpsFixture:
        fixture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            server_version = "postveil-test"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                with fixture._lock:
                    fixture.requests.append((host, self.path))
                    response = fixture._hosts.get(host)
                if response is None or self.path != POLICY_PATH:
                    self.send_error(404)
                    return
                if response.delay:
                    time.sleep(response.delay)
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                if response.location:
                    self.send_header("Location", response.location)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

        base = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.pki.issue("default.invalid").configure_cert(base)
        base.sni_callback = self._select_certificate

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                # Clients that reject our certificate abort the handshake; that is
                # what the wrong-name tests expect, not a fixture error.
                pass

            def get_request(self):  # type: ignore[no-untyped-def]
                sock, addr = super().get_request()
                return base.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        self._server = Server((self.address, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True, name="https-fixture").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HttpsFixture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
