"""Mail the built-in portal sends: the notification of a waiting message, the
verification code, and the optional notice to the sender that a recipient opened it.

None carries anything of the message but its sender's address, its Message-ID and
its Date: no subject, no text. All go through ``portal.notify_relay`` (by default Postfix's re-injection
listener, which runs without milters) with one SMTP transaction each.
"""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime, make_msgid

from postveil.config.portal import PortalSection
from postveil.portal.reading import visible_text
from postveil.portal.store import PortalError


def notification(
    section: PortalSection, *, recipient: str, sender: str, link: str, expires: float
) -> EmailMessage:
    """Build the notification to ``recipient`` that a message from ``sender`` waits
    at ``link``."""
    until = datetime.fromtimestamp(expires, UTC).strftime("%d %B %Y, %H:%M UTC")
    sender = visible_text(sender)
    body = (
        f"{sender} sent you a message through the secure portal of {section.organisation}.\n"
        "\n"
        "Open it here:\n"
        f"{link}\n"
        "\n"
        "Before the message is shown, the portal sends a one-time code to this address,\n"
        "to check that the person opening it can read your mail.\n"
        "\n"
        f"The message can be picked up until {until}; after that it is deleted.\n"
        "If you did not expect it, you can ignore this notice.\n"
    )
    return _message(section, recipient, f"Secure message from {sender}", body)


def code_message(
    section: PortalSection, *, recipient: str, code: str, lifetime: float
) -> EmailMessage:
    """Build the message that carries a verification code."""
    valid_for = _duration_text(lifetime)
    body = (
        f"Your code for the secure portal of {section.organisation} is:\n"
        "\n"
        f"    {code[:4]} {code[4:]}\n"
        "\n"
        f"It is valid for {valid_for} and can be used once.\n"
        "If you did not ask for a code, someone may have your link: do not pass the\n"
        "code on, and tell the sender of the message.\n"
    )
    return _message(section, recipient, "Your secure portal code", body)


MAX_HEADER_BLOCK = 256 * 1024
"""Bytes at the start of a stored message searched for its Message-ID and Date."""

MAX_QUOTED_HEADER = 200
"""Characters of the original's Message-ID or Date that a pickup notice repeats."""


def original_identity(raw: bytes) -> tuple[str, str]:
    """Return the Message-ID and Date header values of ``raw``, or ``(none)`` for a
    missing one. Each value is unfolded, cut to MAX_QUOTED_HEADER characters, and its
    hidden characters are replaced."""
    block = raw[:MAX_HEADER_BLOCK]
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = block.find(separator)
        if end >= 0:
            block = block[: end + len(separator)]
            break
    headers = BytesHeaderParser(policy=compat32).parsebytes(block)
    found = []
    for name in ("Message-ID", "Date"):
        value = headers.get(name)
        text = " ".join(str(value).split()) if value is not None else ""
        found.append(visible_text(text[:MAX_QUOTED_HEADER]) or "(none)")
    return found[0], found[1]


def pickup_notice(
    section: PortalSection,
    *,
    sender: str,
    recipient: str,
    opened: float,
    stored: float,
    original_message_id: str,
    original_date: str,
) -> EmailMessage:
    """Build the notice to ``sender`` that ``recipient`` opened the message for the
    first time. It names the message only by its Message-ID, its Date header and the
    time the portal stored it, because its subject may name a patient."""
    body = (
        f"{visible_text(recipient)} opened the message you sent them through the secure\n"
        f"portal of {section.organisation}.\n"
        "\n"
        f"Opened:      {_utc_text(opened)}\n"
        f"Message-ID:  {original_message_id}\n"
        f"Date:        {original_date}\n"
        f"Stored:      {_utc_text(stored)}\n"
        "\n"
        "The portal sends this notice once for each recipient, the first time they open\n"
        "the message.\n"
    )
    return _message(section, sender, "Secure message opened", body)


def _utc_text(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%d %B %Y, %H:%M:%S UTC")


def _message(section: PortalSection, recipient: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"{section.organisation} secure portal <{section.sender_address}>"
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=section.sender_address.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    # 7bit or 8bit, never quoted-printable: a soft line break would split a long
    # link in the raw message, and tools that read raw mail would see half a link.
    message.set_content(body, cte="7bit" if body.isascii() else "8bit")
    return message


def send(section: PortalSection, message: EmailMessage, *, timeout: float = 30.0) -> None:
    """Send ``message`` through ``portal.notify_relay``; raise PortalError naming the
    relay and the cause when it is not accepted."""
    host, port = section.relay_address
    recipient = str(message["To"])
    try:
        with smtplib.SMTP(host, port, timeout=timeout, local_hostname="localhost") as client:
            refused = client.send_message(
                message, from_addr=section.sender_address, to_addrs=[recipient]
            )
    except smtplib.SMTPRecipientsRefused as exc:
        raise PortalError(
            f"portal.notify_relay {section.notify_relay} rejected the recipient: {_replies(exc.recipients)}"
        ) from exc
    except smtplib.SMTPResponseException as exc:
        reply = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else exc.smtp_error
        )
        raise PortalError(
            f"portal.notify_relay {section.notify_relay} replied {exc.smtp_code} {' '.join(str(reply).split())}"
        ) from exc
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise PortalError(
            f"cannot send through portal.notify_relay {section.notify_relay}: {type(exc).__name__}: {exc}"
        ) from exc
    if refused:
        raise PortalError(f"portal.notify_relay {section.notify_relay} rejected the recipient")


def _replies(refused: dict[str, tuple[int, bytes]]) -> str:
    """Join the relay's replies to rejected recipients into one line, without the
    addresses."""
    return "; ".join(
        f"{code} {' '.join(text.decode('utf-8', 'replace').split())}"
        for code, text in refused.values()
    )


def _duration_text(seconds: float) -> str:
    """Spell a lifetime in whole minutes, rounded down, or in seconds below a minute,
    so that the mail never promises more time than the code has."""
    if seconds < 60:
        count, unit = int(seconds), "second"
    else:
        count, unit = int(seconds // 60), "minute"
    return f"{count} {unit}" + ("" if count == 1 else "s")
