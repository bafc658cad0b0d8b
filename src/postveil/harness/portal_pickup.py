"""A portal recipient's pickup, scripted over HTTP on loopback: open the link from the
notification, request a code, enter the code from the code mail, read the message.

The steps use :mod:`http.client` without following redirects, so each request and
its status can be masked_path, and the session cookie is carried by hand.
"""

from __future__ import annotations

import html
import http.client
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from urllib.parse import urlencode, urlsplit

from postveil.harness.net import assert_loopback
from postveil.harness.smtp import ReceivedMessage, SmtpSink

NOTIFICATION_SUBJECT = "Secure message from "
CODE_SUBJECT = "Your secure portal code"
SESSION_COOKIE = "postveil_session"

_CODE_RE = re.compile(r"^ +(\d{4}) (\d{4}) *\r?$", re.MULTILINE)
_SUBJECT_ROW_RE = re.compile(r"<tr><th>Subject</th><td>(.*?)</td></tr>", re.DOTALL)


class PickupError(RuntimeError):
    """A step of the pickup did not get the expected response or mail."""

    def __init__(self, message: str, pickup: Pickup | None = None) -> None:
        super().__init__(message)
        self.pickup = pickup
        """The pickup so far, with its steps up to and including the failed one."""


def parse_mail(message: ReceivedMessage) -> EmailMessage:
    parsed = message_from_bytes(message.data, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def portal_mail(
    sink: SmtpSink, sender: str, recipient: str, subject_prefix: str
) -> list[ReceivedMessage]:
    """Return the messages from ``sender`` to ``recipient`` alone at ``sink`` whose
    subject starts with ``subject_prefix``, oldest first."""
    found = []
    for message in list(sink.messages):
        if message.mail_from != sender or message.rcpt_tos != (recipient,):
            continue
        if str(parse_mail(message)["Subject"] or "").startswith(subject_prefix):
            found.append(message)
    return found


def wait_for_mail(
    sink: SmtpSink,
    sender: str,
    recipient: str,
    subject_prefix: str,
    *,
    skip: Callable[[ReceivedMessage], bool] = lambda message: False,
    timeout: float = 30,
) -> ReceivedMessage | None:
    """Wait for the oldest matching message (see :func:`portal_mail`) for which
    ``skip`` returns False; return None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for message in portal_mail(sink, sender, recipient, subject_prefix):
            if not skip(message):
                return message
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def link_in(notification: ReceivedMessage, base_url: str) -> str:
    """Return the pickup link in ``notification``; raise PickupError when it has none."""
    text = parse_mail(notification).get_content()
    match = re.search(re.escape(base_url) + r"/m/[A-Za-z0-9_-]+", text)
    if match is None:
        raise PickupError(f"the notification has no link that starts with {base_url}/m/")
    return match.group(0)


def code_in(code_mail: ReceivedMessage) -> str:
    """Return the 8-digit code in a code mail; raise PickupError when it has none."""
    match = _CODE_RE.search(parse_mail(code_mail).get_content())
    if match is None:
        raise PickupError("the code mail has no code in the expected 'NNNN NNNN' form")
    return match.group(1) + match.group(2)


def mask_token(link: str) -> str:
    """Return ``link`` with its token replaced by ``<token>``, for printing."""
    return re.sub(r"/m/[A-Za-z0-9_-]+", "/m/<token>", link)


@dataclass
class Step:
    """One request of the pickup and what came back."""

    method: str
    path: str
    """The request path with the token masked."""
    status: int
    note: str = ""


@dataclass
class Pickup:
    """The steps of one pickup and the Subject the message page showed."""

    steps: list[Step] = field(default_factory=list)
    code_mail: ReceivedMessage | None = None
    subject: str | None = None


class PickupClient:
    """An HTTP client for one pickup link on a loopback portal."""

    def __init__(self, link: str, timeout: float = 30) -> None:
        parts = urlsplit(link)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(
                f"expected a link such as http://127.0.0.1:8480/m/TOKEN, got {mask_token(link)}"
            )
        assert_loopback(parts.hostname)
        self.link = link
        self.host = parts.hostname
        self.port = parts.port
        self.path = parts.path
        self.timeout = timeout
        self.session: str | None = None

    def request(
        self, method: str, suffix: str = "", form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        """Send one request to the link's path plus ``suffix``; return the status,
        the headers (names in lower case) and the body as text."""
        headers = {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.session is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.session}"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, self.path + suffix, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
            received = {name.lower(): value for name, value in response.getheaders()}
            cookie = response.getheader("Set-Cookie")
        finally:
            connection.close()
        if cookie is not None and cookie.startswith(f"{SESSION_COOKIE}="):
            self.session = cookie.split(";", 1)[0].partition("=")[2] or None
        return response.status, received, text


def pick_up(link: str, wait_for_code: Callable[[], ReceivedMessage | None]) -> Pickup:
    """Walk through the pickup at ``link`` as its recipient would.

    ``wait_for_code`` returns the code mail that the code request sent, or None when
    none arrived. Raises PickupError at the first step that fails, and OSError when the
    portal cannot be reached.
    """
    client = PickupClient(link)
    masked_path = mask_token(client.path)
    result = Pickup()

    status, _, page = client.request("GET")
    result.steps.append(Step("GET", masked_path, status, "landing page with 'Send me a code'"))
    if status != 200 or "Send me a code" not in page:
        raise PickupError(
            f"GET {masked_path} returned {status}, expected 200 with the code button", result
        )

    status, _, _ = client.request("POST", "/code")
    result.steps.append(Step("POST", masked_path + "/code", status, "code requested"))
    if status != 303:
        raise PickupError(f"POST {masked_path}/code returned {status}, expected 303", result)

    code_mail = wait_for_code()
    if code_mail is None:
        raise PickupError(f"no code mail arrived after POST {masked_path}/code", result)
    result.code_mail = code_mail

    try:
        code = code_in(code_mail)
    except PickupError as exc:
        raise PickupError(str(exc), result) from None
    status, _, _ = client.request("POST", "/verify", {"code": code})
    note = "code from the code mail entered"
    if client.session is not None:
        note += ", session cookie set"
    result.steps.append(Step("POST", masked_path + "/verify", status, note))
    if status != 303 or client.session is None:
        raise PickupError(
            f"POST {masked_path}/verify returned {status} without a session, expected 303 and a cookie",
            result,
        )

    status, _, page = client.request("GET", "/message")
    match = _SUBJECT_ROW_RE.search(page)
    result.subject = html.unescape(match.group(1)) if match else None
    result.steps.append(Step("GET", masked_path + "/message", status, f"Subject: {result.subject}"))
    if status != 200 or result.subject is None:
        raise PickupError(
            f"GET {masked_path}/message returned {status} without a Subject row, expected 200",
            result,
        )
    return result
