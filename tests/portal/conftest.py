"""A real postveil-portal application on 127.0.0.1 with a real store in tmp_path and an
SMTP sink on 127.0.0.1 that catches the code mail."""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from postveil.audit import AuditLog, generate_key_file
from postveil.config import Config, parse_config
from postveil.harness.net import free_port
from postveil.portal.store import PortalStore, generate_master_key
from postveil.portal.web import PORTAL_KEY, Portal, SendFunction, make_app
from tests import planted

# aiosmtpd logs every DATA line at DEBUG, and the code mail carries the code.
logging.getLogger("mail.log").setLevel(logging.WARNING)

RECIPIENT = "jordan.lee@example.org"
SENDER = "clinic@example.org"
SUBJECT = f"Befund für {planted.PATIENT_NAME}"
BODY_TEXT = f"Patient {planted.PATIENT_NAME}, SSN {planted.SSN}: results attached."
ATTACHMENT = b"%PDF-1.4 lab report for " + planted.MRN.encode()
_CODE_RE = re.compile(rb"^ +(\d{4}) (\d{4}) *\r?$", re.MULTILINE)


def sample_message(*, html: str | None = None) -> bytes:
    """A message with a non-ASCII subject, a text body (or only ``html``) and a PDF
    attachment whose name tries to climb out of the download directory."""
    message = EmailMessage()
    message["From"] = f"Clinic <{SENDER}>"
    message["To"] = RECIPIENT
    message["Cc"] = "records@example.org"
    message["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    message["Subject"] = SUBJECT
    if html is None:
        message.set_content(BODY_TEXT)
    else:
        message.set_content(html, subtype="html")
    message.add_attachment(
        ATTACHMENT,
        maintype="application",
        subtype="pdf",
        filename='../../etc/lab "report".pdf',
    )
    return message.as_bytes()


class SinkHandler:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.rejected: set[str] = set()
        """Recipients that RCPT TO rejects with 550."""
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if address in self.rejected:
                return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        with self.lock:
            self.messages.append(envelope.content)
            self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"


@dataclass
class MailSink:
    port: int
    handler: SinkHandler

    @property
    def messages(self) -> list[bytes]:
        with self.handler.lock:
            return list(self.handler.messages)

    def messages_to(self, recipient: str) -> list[bytes]:
        """Messages whose envelope recipients include ``recipient``."""
        with self.handler.lock:
            return [
                content
                for content, (_, recipients) in zip(
                    self.handler.messages, self.handler.envelopes, strict=True
                )
                if recipient in recipients
            ]

    def reject(self, recipient: str) -> None:
        with self.handler.lock:
            self.handler.rejected.add(recipient)

    def last_code(self) -> str:
        match = _CODE_RE.search(self.messages[-1])
        assert match is not None, "no code in the last mail"
        return (match.group(1) + match.group(2)).decode()


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield MailSink(port, handler)
    controller.stop()


@dataclass
class RunningPortal:
    base_url: str
    config: Config
    store: PortalStore
    audit_directory: Path
    sink: MailSink
    ssl_context: ssl.SSLContext | None = None
    tokens: list[str] = field(default_factory=list)
    """Every link token deposited, so tests can look for them in logs."""
    portal: Portal | None = None
    """The application's request handlers, for tests that inspect or tune them."""

    def deposit(
        self, raw: bytes | None = None, *, retention: float = 3600.0, sender: str = SENDER
    ) -> tuple[str, str]:
        """Store a message for RECIPIENT; return (message id, link token)."""
        deposit = self.store.deposit(
            sample_message() if raw is None else raw,
            sender=sender,
            recipients=[RECIPIENT],
            retention=retention,
            queue_id="4QzTest01",
        )
        token = deposit.tokens[0][1]
        self.tokens.append(token)
        return deposit.message_id, token

    def url(self, token: str, suffix: str = "") -> str:
        return f"{self.base_url}/m/{token}{suffix}"

    def client(self) -> aiohttp.ClientSession:
        # unsafe=True: the default jar ignores cookies from IP-address hosts.
        return aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(ssl=self.ssl_context or False),
        )

    def audit_text(self) -> str:
        return "".join(path.read_text() for path in sorted(self.audit_directory.glob("*.jsonl")))

    def audit_events(self) -> list[str]:
        return [record["event"] for record in self.audit_records()]

    def audit_records(self) -> list[dict[str, Any]]:
        """The ``portal`` records of the audit trail, oldest first."""
        records = []
        for line in self.audit_text().splitlines():
            record: dict[str, Any] = json.loads(line)
            if record.get("kind") == "portal":
                records.append(record)
        return records


StartPortal = Callable[..., Awaitable[RunningPortal]]


def write_config(tmp_path: Path, **portal: Any) -> Path:
    """Write a configuration file with fresh keys under ``tmp_path``."""
    audit_directory = tmp_path / "audit"
    audit_key = tmp_path / "audit.key"
    portal_key = tmp_path / "portal.key"
    if not audit_key.exists():
        generate_key_file(audit_key)
    if not portal_key.exists():
        generate_master_key(portal_key)
    settings = {
        "store_directory": str(tmp_path / "store"),
        "key_file": str(portal_key),
        "organisation": "Example Clinic",
        **portal,
    }
    document = {
        "portal": settings,
        "audit": {"directory": str(audit_directory), "key_file": str(audit_key), "fsync": "never"},
        "logging": {"level": "DEBUG", "target": "stderr"},
    }
    path = tmp_path / "postveil.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="session")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def start_portal(
    tmp_path: Path, mail_sink: MailSink, certificate_authority: trustme.CA
) -> AsyncIterator[StartPortal]:
    """Return an async function that starts the portal with the given ``portal`` keys
    (``tls=True`` serves HTTPS with a certificate for 127.0.0.1, ``path`` is the path
    of base_url, and ``send_buffer`` fixes SO_SNDBUF of its connections in bytes)."""
    runners: list[web.AppRunner] = []
    opened: list[tuple[PortalStore, AuditLog]] = []

    async def start(
        *,
        tls: bool = False,
        send: SendFunction | None = None,
        send_timeout: float | None = None,
        path: str = "",
        send_buffer: int | None = None,
        **portal: Any,
    ) -> RunningPortal:
        port = free_port()
        scheme = "https" if tls else "http"
        base_url = f"{scheme}://127.0.0.1:{port}{path}"
        portal.setdefault("notify_relay", f"127.0.0.1:{mail_sink.port}")
        config_path = write_config(
            tmp_path, base_url=base_url, listen=f"127.0.0.1:{port}", **portal
        )
        config = parse_config(config_path.read_bytes(), str(config_path))

        store = PortalStore.open(config.portal.store_directory, config.portal.key_file)
        audit = AuditLog(config.audit, program="postveil-portal")
        opened.append((store, audit))

        options: dict[str, Any] = {}
        if send is not None:
            options["send"] = send
        if send_timeout is not None:
            options["send_timeout"] = send_timeout
        app = make_app(config, store, audit, **options)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)

        server_context = None
        client_context = None
        if tls:
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
            client_context = ssl.create_default_context()
            certificate_authority.configure_trust(client_context)
        if send_buffer is None:
            await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context).start()
        else:
            # Accepted connections take SO_SNDBUF from the listening socket.
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            listener.bind(("127.0.0.1", port))
            await web.SockSite(runner, listener, ssl_context=server_context).start()
        return RunningPortal(
            base_url,
            config,
            store,
            Path(config.audit.directory),
            mail_sink,
            client_context,
            portal=app[PORTAL_KEY],
        )

    yield start
    for runner in runners:
        await runner.cleanup()
    for store, audit in opened:
        store.close()
        audit.close()
