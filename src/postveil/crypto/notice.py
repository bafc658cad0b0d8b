"""The notice sent to a sender whose message lost recipients: who, why, and what next.

The readers are staff, not administrators: the notice says in everyday words whether
anybody got the message, why the listed recipients did not, and what to do next. The
technical reason follows on a second line per recipient for the IT team.
"""

from __future__ import annotations

import datetime
import re
import textwrap
from collections.abc import Sequence
from email.utils import format_datetime, make_msgid

from postveil.config.routing import RoutingSection
from postveil.routing.classify import MessageClass
from postveil.routing.decide import Method, RecipientDecision
from postveil.routing.explain import plain_class_reason, plain_reason
from postveil.routing.plan import DeliveryPlan

WIDTH = 72
"""Width the prose is wrapped to, so plain-text mail programs show it unbroken."""

TECHNICAL_MAX = 200
"""Maximum characters of one recipient's technical reason; longer ones are cut."""

IDENTIFIER_MAX = 200
"""Maximum characters shown of the original Date and Message-ID values."""

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")


def build_notice(
    sender: str,
    plan: DeliveryPlan,
    *,
    message_date: str | None,
    message_id: str | None,
    message_class: MessageClass,
    tags: Sequence[str],
    routing: RoutingSection,
    portal_configured: bool,
    now: datetime.datetime | None = None,
) -> bytes:
    """Build the notice telling ``sender`` that ``plan.unroutable`` did not get the message.

    It identifies the message by ``message_date`` and ``message_id`` (the original's
    Date and Message-ID values) and states how many other recipients it was sent to.
    Send it with the null envelope sender (``<>``), as for any delivery status notice,
    so it cannot loop. Returns the complete message with CRLF line endings.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    removed = plan.unroutable
    sent_to = sum(len(group.recipients) for group in plan.groups)
    subject, opening = _outcome(len(removed), sent_to)
    listed = "the recipient" if len(removed) == 1 else "the recipients"

    lines: list[str] = [*_wrap(opening), ""]
    # The message is named by its Date and Message-ID only. Its Subject and text are
    # left out on purpose: they may contain patient information (PHI), and a notice
    # can be forwarded, printed or read by people who were not meant to see them.
    lines += [
        "The message:",
        f"  Date:       {_identifier(message_date)}",
        f"  Message-ID: {_identifier(message_id)}",
        "",
    ]
    class_reason = plain_class_reason(message_class, tags)
    lines += _wrap(
        f"It needed protection because {class_reason}. The mail system found no secure way to "
        f"deliver it to {listed} below, and it does not send such mail unprotected."
    )
    lines += ["", "Not delivered to:", ""]
    for decision in removed:
        lines += _recipient_lines(decision)
        lines.append("")

    lines += ["What you can do:", ""]
    resend = "send the message again"
    if sent_to:
        resend += f" to {listed} listed above only"
    for step in _next_steps(_removed_methods(plan), resend, routing, portal_configured):
        lines += _wrap(step, indent="  - ", subsequent="    ")

    domain = routing.notice_from.rpartition("@")[2] or "localhost"
    body = "\r\n".join(lines) + "\r\n"
    headers = [
        f"From: {routing.notice_from}",
        f"To: {sender}",
        f"Subject: {subject}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid(domain=domain)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Transfer-Encoding: {'7bit' if body.isascii() else '8bit'}",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8")


def _outcome(removed: int, sent_to: int) -> tuple[str, str]:
    """Return the notice's Subject and opening sentences: who got the message, if anyone."""
    total = removed + sent_to
    if sent_to:
        others = "the other recipient" if sent_to == 1 else f"the other {sent_to} recipients"
        return (
            "Your message was not delivered to some recipients",
            f"Your message was not delivered to {removed} of its {total} recipients. "
            f"It was sent to {others}.",
        )
    recipients = "its recipient" if total == 1 else f"any of its {total} recipients"
    return (
        "Your message was not delivered",
        f"Your message was not delivered to {recipients}. Nobody received it.",
    )


def _recipient_lines(decision: RecipientDecision) -> list[str]:
    """Return the address, the reason in everyday words and the technical reason."""
    lines = [f"  {decision.recipient}"]
    lines += _wrap(_sentence(plain_reason(decision.unavailable)), indent="    ")
    technical = "; ".join(decision.skipped) or decision.reason
    lines += _wrap(f"For IT: {_shorten(technical, TECHNICAL_MAX)}", indent="    ")
    return lines


def _removed_methods(plan: DeliveryPlan) -> set[Method]:
    """Return every method that was unavailable for some removed recipient."""
    return {method for decision in plan.unroutable for method in decision.unavailable}


def _next_steps(
    unavailable: set[Method], resend: str, routing: RoutingSection, portal_configured: bool
) -> list[str]:
    """Return the notice's list of next steps. ``resend`` is the instruction to send the
    message again, naming whom to send it to."""
    steps: list[str] = []
    if Method.PGP in unavailable or Method.SMIME in unavailable:
        steps.append(
            "Ask your IT team to import the encryption key or certificate of each "
            "recipient listed above. Recipients can send theirs to the IT team. "
            f"Then {resend}."
        )
    portal_tag = _portal_tag(routing)
    if portal_configured and portal_tag is not None and "portal" in routing.methods.forced_portal:
        step = (
            f"{resend} with {portal_tag} in the Subject, in place of any other tag. It then "
            "goes through the secure portal."
        )
        steps.append("Or " + step if steps else step[:1].upper() + step[1:])
    if routing.notice_next_step:
        steps.append(routing.notice_next_step)
    steps.append(
        "You can forward this notice to your IT team. It contains neither the Subject "
        "nor the text of your message."
    )
    return steps


def _portal_tag(routing: RoutingSection) -> str | None:
    """Return the first Subject tag that forces the portal, or None when there is none."""
    return next((tag for tag, method in routing.method_tags.items() if method == "portal"), None)


def _sentence(clause: str) -> str:
    return clause[:1].upper() + clause[1:] + "."


def _identifier(value: str | None) -> str:
    """Show an original header value on one line, or ``(none)`` when it is absent."""
    if not value:
        return "(none)"
    return _shorten(_CONTROL_RE.sub(" ", value).strip(), IDENTIFIER_MAX)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _wrap(text: str, indent: str = "", subsequent: str | None = None) -> list[str]:
    """Wrap ``text`` to WIDTH. Long words such as addresses are not broken."""
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=indent,
        subsequent_indent=indent if subsequent is None else subsequent,
        break_long_words=False,
        break_on_hyphens=False,
    )
