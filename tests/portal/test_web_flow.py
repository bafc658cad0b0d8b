"""The recipient's way through the portal: link, code, verification, message, downloads."""

from __future__ import annotations

import asyncio

import aiohttp

from postveil.portal.web import SESSION_COOKIE
from tests import planted
from tests.portal.conftest import (
    ATTACHMENT,
    RECIPIENT,
    SENDER,
    SUBJECT,
    RunningPortal,
    StartPortal,
    sample_message,
)


async def request_code(client: aiohttp.ClientSession, portal: RunningPortal, token: str) -> str:
    async with client.post(portal.url(token, "/code"), allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == f"/m/{token}/code"
    return portal.sink.last_code()


async def sign_in(client: aiohttp.ClientSession, portal: RunningPortal, token: str) -> None:
    code = await request_code(client, portal, token)
    async with client.post(
        portal.url(token, "/verify"), data={"code": code}, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == f"/m/{token}/message"


async def test_whole_flow_link_to_download(start_portal: StartPortal) -> None:
    portal = await start_portal()
    raw = sample_message()
    message_id, token = portal.deposit(raw)

    async with portal.client() as client:
        async with client.get(portal.url(token)) as response:
            landing = await response.text()
        assert response.status == 200
        assert SENDER in landing
        assert "j***@example.org" in landing
        assert RECIPIENT not in landing
        assert "Send me a code" in landing
        assert f'action="/m/{token}/code"' in landing

        async with client.post(portal.url(token, "/code")) as response:
            form = await response.text()
        assert response.status == 200
        assert str(response.url) == portal.url(token, "/code")
        assert 'name="code"' in form
        assert len(portal.sink.messages) == 1
        code = portal.sink.last_code()
        assert code.isdigit()
        assert len(code) == 8

        async with client.post(
            portal.url(token, "/verify"), data={"code": code}, allow_redirects=False
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == f"/m/{token}/message"
            cookie = response.cookies[SESSION_COOKIE]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == f"/m/{token}"
        assert not cookie["secure"]

        async with client.get(portal.url(token, "/message")) as response:
            page = await response.text()
        assert response.status == 200
        assert SUBJECT in page
        assert planted.PATIENT_NAME in page
        assert "records@example.org" in page
        assert "Fri, 04 Dec 2026" in page
        assert "lab _report_.pdf" in page
        assert f'href="/m/{token}/part/1"' in page
        assert "HTML version" not in page

        async with client.get(portal.url(token, "/download")) as response:
            whole = await response.read()
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"] == 'attachment; filename="message.eml"'
        assert whole == raw

        async with client.get(portal.url(token, "/part/1")) as response:
            attachment = await response.read()
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"] == 'attachment; filename="lab _report_.pdf"'
        assert attachment == ATTACHMENT

        async with client.get(portal.url(token, "/part/9")) as response:
            assert response.status == 404

        # A second view is not a second "opened".
        async with client.get(portal.url(token, "/message")) as response:
            assert response.status == 200

        # With a session, the link leads straight to the message.
        async with client.get(portal.url(token), allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == f"/m/{token}/message"

    assert portal.audit_events() == ["code_sent", "verified", "opened", "downloaded", "downloaded"]
    assert message_id in portal.audit_text()
    assert RECIPIENT in portal.audit_text()
    assert "4QzTest01" in portal.audit_text()


async def test_logout_ends_session(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.post(portal.url(token, "/logout")) as response:
            assert response.status == 200
            assert "signed out" in await response.text()
        async with client.get(portal.url(token, "/message"), allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == f"/m/{token}"


async def test_message_without_session_redirects(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        for suffix in ("/message", "/download", "/part/0"):
            async with client.get(portal.url(token, suffix), allow_redirects=False) as response:
                assert response.status == 303, suffix
                assert response.headers["Location"] == f"/m/{token}"

    assert portal.audit_events() == []


async def test_wrong_code_voids_after_attempts(start_portal: StartPortal) -> None:
    portal = await start_portal(code_attempts=3)
    _, token = portal.deposit()

    async with portal.client() as client:
        code = await request_code(client, portal, token)
        wrong = "00000000" if code != "00000000" else "11111111"
        for _ in range(2):
            async with client.post(portal.url(token, "/verify"), data={"code": wrong}) as response:
                page = await response.text()
            assert response.status == 200
            assert "not correct" in page
            assert 'name="code"' in page
        async with client.post(portal.url(token, "/verify"), data={"code": wrong}) as response:
            page = await response.text()
        assert "no longer works" in page
        # The right code no longer helps once the code is void.
        async with client.post(
            portal.url(token, "/verify"), data={"code": code}, allow_redirects=False
        ) as response:
            page = await response.text()
        assert response.status == 200
        assert "no longer works" in page
        assert SESSION_COOKIE not in response.cookies

        # A new code starts over.
        await sign_in(client, portal, token)

    assert portal.audit_events() == [
        "code_sent",
        "code_wrong",
        "code_wrong",
        "code_void",
        "code_sent",
        "verified",
    ]


async def test_code_used_once(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        code = await request_code(client, portal, token)
        async with client.post(
            portal.url(token, "/verify"), data={"code": code}, allow_redirects=False
        ) as response:
            assert response.status == 303
        async with client.post(portal.url(token, "/verify"), data={"code": code}) as response:
            page = await response.text()
        assert "already used" in page


async def test_verify_without_code_requested(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        async with client.post(portal.url(token, "/verify"), data={"code": "12345678"}) as response:
            page = await response.text()
        assert response.status == 200
        assert "No code is waiting" in page
        async with client.post(portal.url(token, "/verify"), data={}) as response:
            assert response.status == 200


async def test_code_rate_limit(start_portal: StartPortal) -> None:
    portal = await start_portal(codes_per_hour=2)
    _, token = portal.deposit()

    async with portal.client() as client:
        for _ in range(2):
            await request_code(client, portal, token)
        async with client.post(portal.url(token, "/code"), allow_redirects=False) as response:
            page = await response.text()
        assert response.status == 429
        assert "at most 2 codes" in page
        assert 'name="code"' in page

    assert len(portal.sink.messages) == 2
    assert portal.audit_events() == ["code_sent", "code_sent", "code_refused"]


async def test_unknown_expired_malformed_same_404(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, expired = portal.deposit(retention=0.001)
    _, valid = portal.deposit()
    unknown = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")

    bodies = set()
    async with portal.client() as client:
        for token in (expired, unknown, "short", "bad.token.with.dots.in.it!"):
            for suffix in ("", "/code", "/message"):
                async with client.get(portal.url(token, suffix)) as response:
                    assert response.status == 404, (token, suffix)
                    bodies.add(await response.text())
            async with client.post(portal.url(token, "/code")) as response:
                assert response.status == 404
                bodies.add(await response.text())
        async with client.get(f"{portal.base_url}/elsewhere") as response:
            assert response.status == 404
            bodies.add(await response.text())

    assert len(bodies) == 1
    assert portal.sink.messages == []


async def test_session_of_a_does_not_open_b(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token_a = portal.deposit()
    _, token_b = portal.deposit()

    async with portal.client() as client:
        code = await request_code(client, portal, token_a)
        async with client.post(
            portal.url(token_a, "/verify"), data={"code": code}, allow_redirects=False
        ) as response:
            session = response.cookies[SESSION_COOKIE].value

    async with aiohttp.ClientSession() as client:
        headers = {"Cookie": f"{SESSION_COOKIE}={session}"}
        async with client.get(
            portal.url(token_a, "/message"), headers=headers, allow_redirects=False
        ) as response:
            assert response.status == 200
        for suffix in ("/message", "/download", "/part/1"):
            async with client.get(
                portal.url(token_b, suffix), headers=headers, allow_redirects=False
            ) as response:
                assert response.status == 303, suffix
                assert response.headers["Location"] == f"/m/{token_b}"


async def test_html_part_not_rendered(start_portal: StartPortal) -> None:
    portal = await start_portal()
    html = (
        "<html><head><style>p{color:red}</style><script>alert('x')</script></head>"
        "<body><p>Your <b>results</b> are ready.</p>"
        '<img src="https://tracker.example.org/p.gif"><a href="javascript:x()">link</a>'
        "</body></html>"
    )
    _, token = portal.deposit(sample_message(html=html))

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/message")) as response:
            page = await response.text()
        async with client.get(portal.url(token, "/part/0")) as response:
            html_download = await response.read()
            content_type = response.headers["Content-Type"]
            disposition = response.headers["Content-Disposition"]

    assert "Your results are ready." in page
    assert "<script" not in page
    assert "<b>" not in page
    assert "<img" not in page
    assert "tracker.example.org" not in page
    assert "javascript:" not in page
    assert "alert" not in page
    assert f'href="/m/{token}/part/0"' in page
    assert "HTML version of the text is listed" in page
    assert html_download.decode().strip() == html
    assert content_type == "application/octet-stream"
    assert disposition == 'attachment; filename="part-1.html"'


async def test_https_flow_secure_cookie(start_portal: StartPortal) -> None:
    portal = await start_portal(tls=True)
    _, token = portal.deposit()

    async with portal.client() as client:
        code = await request_code(client, portal, token)
        async with client.post(
            portal.url(token, "/verify"), data={"code": code}, allow_redirects=False
        ) as response:
            cookie = response.cookies[SESSION_COOKIE]
            hsts = response.headers["Strict-Transport-Security"]
        assert cookie["secure"] is True
        assert hsts.startswith("max-age=")
        async with client.get(portal.url(token, "/message")) as response:
            assert response.status == 200
            assert SUBJECT in await response.text()


async def test_base_url_with_path(start_portal: StartPortal) -> None:
    portal = await start_portal(path="/secure")
    _, token = portal.deposit()

    async with portal.client() as client:
        async with client.get(portal.url(token)) as response:
            page = await response.text()
        assert response.status == 200
        assert f'action="/secure/m/{token}/code"' in page
        async with client.post(portal.url(token, "/code"), allow_redirects=False) as response:
            assert response.headers["Location"] == f"/secure/m/{token}/code"
        async with client.post(
            portal.url(token, "/verify"),
            data={"code": portal.sink.last_code()},
            allow_redirects=False,
        ) as response:
            assert response.headers["Location"] == f"/secure/m/{token}/message"
            assert response.cookies[SESSION_COOKIE]["path"] == f"/secure/m/{token}"
        async with client.get(portal.url(token, "/message")) as response:
            assert response.status == 200
        async with client.get(portal.base_url.replace("/secure", "") + f"/m/{token}") as response:
            assert response.status == 404


def _nested_multipart(depth: int) -> bytes:
    lines = [b"From: clinic@example.org", b"Subject: nested"]
    for level in range(depth):
        lines += [b"Content-Type: multipart/mixed; boundary=b%d" % level, b"", b"--b%d" % level]
    lines += [b"Content-Type: text/plain", b"", b"innermost text"]
    lines += [b"--b%d--" % level for level in reversed(range(depth))]
    return b"\r\n".join(lines) + b"\r\n"


async def test_unparsable_message_offered_as_download(start_portal: StartPortal) -> None:
    portal = await start_portal()
    # Deep enough for a RecursionError in Python 3.11's email package.
    raw = _nested_multipart(1500)
    _, token = portal.deposit(raw)

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/message")) as response:
            page = await response.text()
            status = response.status
        async with client.get(portal.url(token, "/download")) as response:
            downloaded = await response.read()

    assert status == 200
    assert "too complex or too damaged to show here" in page
    assert f'href="/m/{token}/download"' in page
    assert downloaded == raw
    assert portal.audit_events().count("opened") == 1


async def test_part_of_unparsable_message_is_503(start_portal: StartPortal) -> None:
    # The page lists no attachments for such a message, but an address typed by hand
    # gets the notice, not a server error.
    portal = await start_portal()
    # The email package raises RecursionError for a Content-Type of many parentheses.
    raw = b"Subject: x\r\nContent-Type: text/plain; " + b"(" * 5000 + b"\r\n\r\nbody\r\n"
    _, token = portal.deposit(raw)

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/part/0")) as response:
            page = await response.text()
            status = response.status

    assert status == 503
    assert "Download the whole message" in page
    assert "downloaded" not in portal.audit_events()


async def test_message_with_many_parts_not_parsed(start_portal: StartPortal) -> None:
    portal = await start_portal()
    parts = b"".join(
        b"--zz\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" for _ in range(1001)
    )
    raw = (
        b"From: clinic@example.org\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n" + parts + b"--zz--\r\n"
    )
    _, token = portal.deposit(raw)

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/message")) as response:
            page = await response.text()
            status = response.status
        async with client.get(portal.url(token, "/part/0")) as response:
            part_status = response.status
        async with client.get(portal.url(token, "/download")) as response:
            downloaded = await response.read()

    assert status == 200
    assert "too complex or too damaged to show here" in page
    assert "Subject" not in page
    assert part_status == 404
    assert downloaded == raw


async def test_concurrent_first_views_one_opened(start_portal: StartPortal) -> None:
    # The views of one link take turns for the read budget, so each later one starts
    # after the first has marked the pickup opened.
    portal = await start_portal()
    _, token = portal.deposit()

    async with portal.client() as client:
        await sign_in(client, portal, token)

        async def view() -> int:
            async with client.get(portal.url(token, "/message")) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(view() for _ in range(4)))

    assert statuses == [200] * 4
    assert portal.audit_events() == ["code_sent", "verified", "opened"]
