"""Re-injection of message versions into Postfix over SMTP.

Each recipient group after the first gets its own version of the message, submitted
to a Postfix smtpd that runs without milters (see conf/postfix/master.cf.reinject),
so the version is queued once and never inspected again.
"""

from __future__ import annotations

import re
import smtplib
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
    helo: str = "postveil-milter",
) -> str:
    """Submit ``message`` for ``recipients`` and return Postfix's queue id.

    ``sender`` is the envelope sender; the empty string sends the null sender ``<>``.
    Raises ReinjectionFailure naming the SMTP step and reply, never the message text.
    """
    host, port = address
    needs_utf8 = not all(part.isascii() for part in (sender, *recipients)) or _has_utf8_headers(message)
    try:
        with smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout) as client:
            client.ehlo(helo)
            options = ["BODY=8BITMIME"]
            if needs_utf8:
                if not client.has_extn("smtputf8"):
                    raise ReinjectionFailure("re-injection listener does not offer SMTPUTF8")
                options.append("SMTPUTF8")
            code, reply = client.mail(sender, options)
            _expect(code, reply, "MAIL FROM")
            for recipient in recipients:
                code, reply = client.rcpt(recipient)
                _expect(code, reply, f"RCPT TO <{recipient}>")
            code, reply = client.data(message)
            _expect(code, reply, "DATA")
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise ReinjectionFailure(f"re-injection to {host}:{port} failed: {type(exc).__name__}: {exc}") from exc
    match = _QUEUED_RE.search(reply.decode(errors="replace"))
    return match.group(1) if match else "unknown"


def _expect(code: int, reply: bytes, step: str) -> None:
    if not 200 <= code < 300:
        text = reply.decode(errors="replace")[:200]
        raise ReinjectionFailure(f"re-injection {step} got {code} {text}")


def _has_utf8_headers(message: bytes) -> bool:
    end = message.find(b"\r\n\r\n")
    headers = message if end < 0 else message[:end]
    return not headers.isascii()
