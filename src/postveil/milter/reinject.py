"""Re-injection of message versions into Postfix over SMTP.

Each recipient group after the first gets its own version of the message, submitted
to a Postfix smtpd that runs without milters (see conf/postfix/master.cf.reinject),
so the version is queued once and never inspected again.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Sequence

from postveil.errors import TemporaryFailure

_QUEUED_RE = re.compile(r"queued as ([0-9A-Za-z]+)")


class ReinjectionFailure(TemporaryFailure):
    """A version could not be handed to Postfix; the original message must be deferred."""


def reinject(
    message: bytes,
    sender: str,
    recipients: Sequence[str],
    *,
    address: tuple[str, int],
    timeout: float,
    deadline: float | None = None,
    helo: str = "postveil-milter",
) -> str:
    """Submit ``message`` for ``recipients`` and return Postfix's queue id.

    ``sender`` is the envelope sender; the empty string sends the null sender ``<>``.
    ``timeout`` limits each step (connect, command, reply), and ``deadline``
    (``time.monotonic()`` seconds) the whole transaction. Raises ReinjectionFailure
    naming the SMTP step and reply, never the message text. Once the listener accepted
    the message, a failure of the closing QUIT is ignored, because the copy is queued.

    NOTE: the deadline shortens the timeout of each step, so a listener that replies to
    every step just before its timeout can overrun the deadline by a few of them.
    """
    host, port = address
    needs_utf8 = not all(part.isascii() for part in (sender, *recipients)) or _has_utf8_headers(message)

    def arm(client: smtplib.SMTP) -> None:
        """Give the next step the rest of the deadline, at most ``timeout``."""
        limit = timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReinjectionFailure(f"re-injection to {host}:{port} cut off: milter.reinject_deadline passed")
            limit = min(timeout, remaining)
        client.timeout = limit
        if client.sock is not None:
            client.sock.settimeout(limit)

    client = smtplib.SMTP(local_hostname=helo, timeout=timeout)
    try:
        arm(client)
        client.connect(host, port)
        arm(client)
        client.ehlo(helo)
        options = ["BODY=8BITMIME"]
        if needs_utf8:
            if not client.has_extn("smtputf8"):
                raise ReinjectionFailure("re-injection listener does not offer SMTPUTF8")
            options.append("SMTPUTF8")
        arm(client)
        code, reply = client.mail(sender, options)
        _expect(code, reply, "MAIL FROM")
        for recipient in recipients:
            arm(client)
            code, reply = client.rcpt(recipient)
            _expect(code, reply, f"RCPT TO <{recipient}>")
        arm(client)
        code, reply = client.data(message)
        _expect(code, reply, "DATA")
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        client.close()
        raise ReinjectionFailure(f"re-injection to {host}:{port} failed: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        client.close()
        raise
    _quit(client)
    match = _QUEUED_RE.search(reply.decode(errors="replace"))
    return match.group(1) if match else "unknown"


def _quit(client: smtplib.SMTP) -> None:
    """End the session politely; the copy is already queued, so errors do not matter."""
    try:
        client.quit()
    except (TimeoutError, smtplib.SMTPException, OSError):
        pass
    finally:
        client.close()


def _expect(code: int, reply: bytes, step: str) -> None:
    if not 200 <= code < 300:
        text = reply.decode(errors="replace")[:200]
        raise ReinjectionFailure(f"re-injection {step} got {code} {text}")


def _has_utf8_headers(message: bytes) -> bool:
    end = message.find(b"\r\n\r\n")
    headers = message if end < 0 else message[:end]
    return not headers.isascii()
