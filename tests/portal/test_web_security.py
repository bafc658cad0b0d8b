"""What the portal's pages protect: headers, origin check, logs without secrets, and
failures that leave the portal working."""

from __future__ import annotations

import asyncio
import logging
import time
from email.message import EmailMessage

import pytest

from postveil.audit import AuditLog, AuditWriteError
from postveil.config.portal import PortalSection
from postveil.harness.net import free_port
from postveil.portal.pages import STYLE_HASH
from postveil.portal.store import PortalError
from postveil.portal.web import SESSION_COOKIE
from tests import planted
from tests.portal.conftest import BODY_TEXT, SUBJECT, StartPortal
from tests.portal.test_web_flow import request_code, sign_in

EXPECTED_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def check_security_headers(headers: object, *, https: bool = False) -> None:
    assert hasattr(headers, "get")
    for name, value in EXPECTED_HEADERS.items():
        assert headers.get(name) == value, name
    policy = headers.get("Content-Security-Policy")
    assert isinstance(policy, str)
    directives = [directive.strip() for directive in policy.split(";")]
    assert "default-src 'none'" in directives
    assert f"style-src '{STYLE_HASH}'" in directives
    assert "form-action 'self'" in directives
    assert "frame-ancestors 'none'" in directives
    assert "script-src" not in policy
    assert (headers.get("Strict-Transport-Security") is not None) is https


async def test_security_headers_on_every_response(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        requests = [
            ("GET", portal.url(token)),
            ("GET", portal.url(token, "/code")),
            ("GET", portal.url("unknown-token-unknown-token")),
            ("GET", f"{portal.base_url}/"),
            ("PUT", portal.url(token)),
            ("POST", portal.url(token, "/code")),
        ]
        for method, url in requests:
            async with client.request(method, url, allow_redirects=False) as response:
                check_security_headers(response.headers)

        async with client.post(
            portal.url(token, "/code"), headers={"Origin": "https://evil.example.org"}
        ) as response:
            assert response.status == 403
            check_security_headers(response.headers)

        code = portal.sink.last_code()
        async with client.post(
            portal.url(token, "/verify"), data={"code": code}, allow_redirects=False
        ) as response:
            check_security_headers(response.headers)
        for suffix in ("/message", "/download", "/part/1"):
            async with client.get(portal.url(token, suffix)) as response:
                assert response.status == 200
                check_security_headers(response.headers)


async def test_security_headers_with_https(start_portal: StartPortal) -> None:
    portal = await start_portal(tls=True)
    _, token = portal.deposit()

    async with portal.client() as client:
        async with client.get(portal.url(token)) as response:
            assert response.status == 200
            check_security_headers(response.headers, https=True)


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example.org", "null", "http://127.0.0.2", "https://127.0.0.1", "garbage"],
)
async def test_post_from_other_origin_rejected(start_portal: StartPortal, origin: str) -> None:
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        for suffix in ("/code", "/verify", "/logout"):
            async with client.post(
                portal.url(token, suffix),
                headers={"Origin": origin},
                data={"code": "12345678"},
                allow_redirects=False,
            ) as response:
                assert response.status == 403, suffix

    assert portal.sink.messages == []
    assert portal.audit_events() == []


async def test_post_from_own_origin_accepted(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        async with client.post(
            portal.url(token, "/code"),
            headers={"Origin": portal.base_url + "/"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303

    assert len(portal.sink.messages) == 1


async def test_no_secret_in_logs_or_audit(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    portal = await start_portal(code_attempts=2)
    _, token = portal.deposit()
    _, other_token = portal.deposit()
    secrets: list[str] = []

    async with portal.client() as client:
        code = await request_code(client, portal, token)
        secrets.append(code)
        async with client.post(
            portal.url(token, "/verify"), data={"code": code}, allow_redirects=False
        ) as response:
            secrets.append(response.cookies[SESSION_COOKIE].value)
        for suffix in ("/message", "/download", "/part/0", "/part/1", "/part/7"):
            async with client.get(portal.url(token, suffix)) as response:
                await response.read()
        # Wrong entries until the code is void, and a rate-limited request.
        await request_code(client, portal, other_token)
        secrets.append(portal.sink.last_code())
        for _ in range(3):
            async with client.post(
                portal.url(other_token, "/verify"), data={"code": "99999999x"}
            ) as response:
                await response.read()
        async with client.post(portal.url(token, "/logout")) as response:
            await response.read()

    logged = caplog.text
    audit = portal.audit_text()
    assert "message=" in logged
    assert "code_wrong" in audit
    assert "code_void" in audit
    for secret in [*portal.tokens, *secrets]:
        assert secret not in logged
        assert secret not in audit
    for text in (SUBJECT, BODY_TEXT, "Befund", *planted.PLANTED.values()):
        assert text not in logged
        assert text not in audit


async def test_relay_down_gives_503(start_portal: StartPortal) -> None:
    closed_port = free_port()
    portal = await start_portal(notify_relay=f"127.0.0.1:{closed_port}")
    _, token = portal.deposit()

    async with portal.client() as client:
        async with client.post(portal.url(token, "/code")) as response:
            page = await response.text()
        assert response.status == 503
        assert "try again in a few minutes" in page
        check_security_headers(response.headers)
        # Nothing else broke: the link and the code form still work.
        async with client.get(portal.url(token)) as response:
            assert response.status == 200
        async with client.get(portal.url(token, "/code")) as response:
            assert response.status == 200

    assert portal.audit_events() == []


async def test_slow_relay_times_out(start_portal: StartPortal) -> None:
    def slow_send(section: PortalSection, message: EmailMessage) -> None:
        time.sleep(1.0)

    portal = await start_portal(send=slow_send, send_timeout=0.2)
    _, token = portal.deposit()

    async with portal.client() as client:
        started = time.monotonic()
        async with client.post(portal.url(token, "/code")) as response:
            assert response.status == 503
        assert time.monotonic() - started < 0.9


async def test_unexpected_error_gives_500(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_send(section: PortalSection, message: EmailMessage) -> None:
        raise RuntimeError(f"relay echoed {planted.SSN}")

    portal = await start_portal(send=broken_send)
    _, token = portal.deposit()

    async with portal.client() as client:
        async with client.post(portal.url(token, "/code")) as response:
            page = await response.text()
        assert response.status == 500
        assert "RuntimeError" not in page
        assert planted.SSN not in page
        check_security_headers(response.headers)
        async with client.get(portal.url(token)) as response:
            assert response.status == 200

    assert "request failed with RuntimeError" in caplog.text
    assert planted.SSN not in caplog.text


async def test_portal_error_from_send_gives_503(start_portal: StartPortal) -> None:
    def rejecting_send(section: PortalSection, message: EmailMessage) -> None:
        raise PortalError("portal.notify_relay refused the recipient")

    portal = await start_portal(send=rejecting_send)
    _, token = portal.deposit()

    async with portal.client() as client:
        async with client.post(portal.url(token, "/code")) as response:
            assert response.status == 503


async def test_large_request_body_rejected(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        async with client.post(
            portal.url(token, "/verify"), data={"code": "1" * 100_000}
        ) as response:
            assert response.status == 413
            check_security_headers(response.headers)


async def test_session_cookie_ignored_after_expiry(start_portal: StartPortal) -> None:
    portal = await start_portal(session_lifetime="1s")
    _, token = portal.deposit()

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/message"), allow_redirects=False) as response:
            assert response.status == 200
        time.sleep(1.1)
        async with client.get(portal.url(token, "/message"), allow_redirects=False) as response:
            assert response.status == 303


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /m/{token} HTTP/9.9\r\n\r\n",
        b"GET /m/{token}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G\x00T /m/{token} HTTP/1.1\r\n\r\n",
    ],
)
async def test_malformed_request_keeps_token_out_of_log(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture, request_line: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    portal = await start_portal()
    _, token = portal.deposit()
    port = int(portal.base_url.rpartition(":")[2])

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_line.replace(b"{token}", token.encode()))
    await writer.drain()
    reply = await reader.read(200)
    writer.close()
    await writer.wait_closed()

    assert reply.startswith(b"HTTP/1.")
    assert "Error handling request" in caplog.text
    assert token not in caplog.text


async def test_cross_site_post_without_origin_rejected(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        async with client.post(
            portal.url(token, "/code"), headers={"Sec-Fetch-Site": "cross-site"}
        ) as response:
            assert response.status == 403
        async with client.post(
            portal.url(token, "/code"),
            headers={"Sec-Fetch-Site": "same-origin"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303

    assert len(portal.sink.messages) == 1


async def test_head_records_nothing(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        await sign_in(client, portal, token)
        for suffix in ("/message", "/download", "/part/1"):
            async with client.head(portal.url(token, suffix)) as response:
                assert response.status == 405, suffix
        async with client.head(portal.url(token)) as response:
            assert response.status == 303

    assert portal.audit_events() == ["code_sent", "verified"]


async def test_no_reading_without_audit_record(
    start_portal: StartPortal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    portal = await start_portal()
    _, token = portal.deposit()
    _, other_token = portal.deposit()

    def failing_append(self: AuditLog, record: object) -> None:
        raise AuditWriteError("audit write failed: disk full")

    async with portal.client() as client:
        await sign_in(client, portal, token)
        code = await request_code(client, portal, other_token)
        monkeypatch.setattr(AuditLog, "append", failing_append)

        for suffix in ("/message", "/download", "/part/1"):
            async with client.get(portal.url(token, suffix)) as response:
                body = await response.read()
            assert response.status == 503, suffix
            assert SUBJECT.encode() not in body
            assert planted.MRN.encode() not in body

        async with client.post(
            portal.url(other_token, "/verify"), data={"code": code}, allow_redirects=False
        ) as response:
            assert response.status == 503
            assert SESSION_COOKIE not in response.cookies

    assert "cannot record the opened event" in caplog.text
    assert "cannot record the verified event" in caplog.text
