"""The scripted portal pickup: reading links and codes from mail, and stopping at the
first step that fails."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from postveil.harness.portal_pickup import (
    PickupError,
    code_in,
    link_in,
    mask_token,
    pick_up,
)
from postveil.harness.smtp import ReceivedMessage

BASE_URL = "http://127.0.0.1:8480"
TOKEN = "nAObdP5cKxu57s9ag5bxGB99FTctiVyeVUBLJsKwhH8"


def received(body: str, subject: str = "Secure message from a@clinic.test") -> ReceivedMessage:
    message = EmailMessage()
    message["From"] = "no-reply@clinic.test"
    message["To"] = "patient@no-tls.test"
    message["Subject"] = subject
    message.set_content(body)
    data = message.as_bytes().replace(b"\n", b"\r\n")
    return ReceivedMessage(
        mail_from="no-reply@clinic.test",
        rcpt_tos=("patient@no-tls.test",),
        data=data,
        peer="127.0.0.1",
        helo="localhost",
        tls_version=None,
        cipher=None,
        sni=None,
    )


def test_link_in_notification() -> None:
    notice = received(f"Open it here:\n{BASE_URL}/m/{TOKEN}\n\nThe message can be picked up.\n")

    assert link_in(notice, BASE_URL) == f"{BASE_URL}/m/{TOKEN}"


def test_link_in_other_portal_rejected() -> None:
    notice = received(f"Open it here:\nhttp://127.0.0.1:9999/m/{TOKEN}\n")

    with pytest.raises(PickupError, match="no link that starts with"):
        link_in(notice, BASE_URL)


def test_code_in_crlf_code_mail() -> None:
    code_mail = received("Your code is:\n\n    4457 0383\n\nIt is valid for 10 minutes.\n")

    assert code_in(code_mail) == "44570383"


def test_code_in_missing_code() -> None:
    with pytest.raises(PickupError, match="no code"):
        code_in(received("Your code is: soon\n"))


def test_mask_token_hides_token() -> None:
    masked = mask_token(f"{BASE_URL}/m/{TOKEN}/verify")

    assert masked == f"{BASE_URL}/m/<token>/verify"
    assert TOKEN not in masked


class NotFoundHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def not_found_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFoundHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pick_up_stops_at_unknown_link(not_found_server: str) -> None:
    def no_code_expected() -> ReceivedMessage | None:
        raise AssertionError("no code may be requested after a failed landing page")

    with pytest.raises(PickupError) as failure:
        pick_up(f"{not_found_server}/m/{TOKEN}", no_code_expected)

    assert "returned 404" in str(failure.value)
    assert TOKEN not in str(failure.value)
    assert failure.value.pickup is not None
    steps = failure.value.pickup.steps
    assert [(step.method, step.path, step.status) for step in steps] == [("GET", "/m/<token>", 404)]
