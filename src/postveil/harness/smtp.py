"""SMTP sinks that record every message with its envelope and TLS facts.

A sink stands in for a recipient domain's MX host. Variants: STARTTLS with a
certificate from the test CA (``tls="valid"``), STARTTLS with a certificate for
another name (``tls="wrong-name"``), and no STARTTLS at all (``tls="none"``).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from postveil.harness.net import assert_loopback, free_port

# aiosmtpd logs every DATA line at DEBUG; message text must not reach test logs.
logging.getLogger("mail.log").setLevel(logging.WARNING)
from postveil.harness.pki import TestPKI  # noqa: E402  (after the log level above)

TlsMode = Literal["valid", "wrong-name", "none"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as a sink received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: str
    helo: str | None
    tls_version: str | None
    """``TLSv1.3`` and so on, or None when the session was not encrypted."""
    cipher: str | None
    sni: str | None
    received_at: float = field(default_factory=time.time)

    @property
    def encrypted(self) -> bool:
        return self.tls_version is not None


class MailSpool:
    """A directory where sinks write each message they accept, numbered in arrival order.

    Message number N from sink host H is ``NNNNNN-H.eml``, byte for byte as the sink
    received it, next to ``NNNNNN-H.envelope`` with the envelope and TLS facts as
    ``Name: value`` lines. The envelope file is written first, and each file appears
    under its final name only when complete. One spool may serve several sinks.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._count = 0

    def save(self, message: ReceivedMessage, sink: SmtpSink) -> Path:
        """Write ``message`` and its envelope file; return the path of the .eml file."""
        with self._lock:
            self._count += 1
            stem = f"{self._count:06d}-{sink.hostname}"
        received = datetime.fromtimestamp(message.received_at, UTC)
        # aiosmtpd stores the null reverse-path of a bounce as "<>".
        sender = "" if message.mail_from == "<>" else message.mail_from
        envelope = [
            f"Sink: {sink.hostname} {sink.address}:{sink.port}",
            f"Mail-From: <{sender}>",
            *(f"Rcpt-To: <{recipient}>" for recipient in message.rcpt_tos),
            f"TLS: {message.tls_version} {message.cipher}" if message.encrypted else "TLS: none",
            f"Peer: {message.peer}",
            f"HELO: {message.helo}",
            f"Received: {received.isoformat(timespec='seconds')}",
        ]
        self._write(f"{stem}.envelope", ("\n".join(envelope) + "\n").encode())
        return self._write(f"{stem}.eml", message.data)

    def _write(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        partial = self.directory / f".{name}.partial"
        partial.write_bytes(data)
        os.replace(partial, path)
        return path


class SmtpSink:
    """An aiosmtpd server on one loopback address recording what it receives."""

    def __init__(
        self,
        address: str,
        pki: TestPKI | None = None,
        *,
        hostname: str = "mx.sink.test",
        tls: TlsMode = "valid",
        port: int = 25,
        reply: str | None = None,
        spool: MailSpool | None = None,
    ) -> None:
        assert_loopback(address)
        if tls != "none" and pki is None:
            raise ValueError("a sink with STARTTLS needs a TestPKI")
        self.address = address
        self.port = port
        self.hostname = hostname
        self.tls = tls
        self.reply = reply
        """Custom reply to DATA (for example ``"451 4.3.0 try later"``); None accepts."""
        self.spool = spool
        """Spool that also receives each accepted message as a file; None keeps messages in memory only."""
        self.messages: list[ReceivedMessage] = []
        self._condition = threading.Condition()
        self._server_names: dict[int, str] = {}
        self._context: ssl.SSLContext | None = None
        if tls != "none" and pki is not None:
            names = (hostname,) if tls == "valid" else (f"wrong-name.{hostname}",)
            self._context = pki.server_context(*names)
            self._context.sni_callback = self._remember_sni
        self._controller: Controller | None = None

    def _remember_sni(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name:
            self._server_names[id(sslobj)] = server_name

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        tls_version = cipher = sni = None
        if session.ssl:
            sslobj = session.ssl.get("ssl_object")
            if sslobj is not None:
                tls_version = sslobj.version()
                cipher_info = sslobj.cipher()
                cipher = cipher_info[0] if cipher_info else None
                sni = self._server_names.get(id(sslobj))
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(envelope.original_content or envelope.content or b""),
            peer=str(session.peer),
            helo=session.host_name,
            tls_version=tls_version,
            cipher=cipher,
            sni=sni,
        )
        if self.reply is not None:
            return self.reply
        if self.spool is not None:
            try:
                self.spool.save(message, self)
            except OSError as exc:
                # A message the admin cannot see should not count as delivered.
                log.error("sink %s (%s): failed to write a message to %s: %s",
                          self.hostname, self.address, self.spool.directory, exc)
                return "451 4.3.0 sink failed to save the message"
        with self._condition:
            self.messages.append(message)
            self._condition.notify_all()
        return "250 2.0.0 Ok: queued"

    def wait_for(self, count: int = 1, timeout: float = 30.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"sink {self.hostname} ({self.address}) received {len(self.messages)} "
                        f"message(s) in {timeout:.0f}s, expected {count}"
                    )
                self._condition.wait(remaining)
            return list(self.messages)

    def start(self) -> SmtpSink:
        if self.port == 0:
            self.port = free_port(self.address)
        self._controller = Controller(
            self,
            hostname=self.address,
            port=self.port,
            server_hostname=self.hostname,
            tls_context=self._context,
            require_starttls=False,
            decode_data=False,
            ready_timeout=10.0,
            data_size_limit=100 * 1024 * 1024,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
