"""HTML of the portal's pages: plain server-rendered forms, no script, nothing external.

Every value that comes from a message, a recipient or the configuration passes through
:func:`html.escape` here, so the page functions take plain strings. The one style
block is allowed by its SHA-256 hash in the Content-Security-Policy
(:data:`STYLE_HASH`), so no other inline style or script can run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape

from postveil.portal.reading import Attachment, MessageView, visible_text

STYLE = (
    "body{font-family:sans-serif;max-width:46em;margin:2em auto;padding:0 1em;color:#222}"
    "h1{font-size:1.4em}pre{white-space:pre-wrap;word-wrap:break-word;background:#f6f6f6;"
    "padding:1em;border:1px solid #ddd}th{text-align:left;padding-right:1em;vertical-align:top}"
    ".notice{padding:.6em 1em;border:1px solid #c90;background:#fff8e5}"
    "button{font-size:1em;padding:.4em 1em}input{font-size:1.2em;letter-spacing:.1em}"
    "footer{margin-top:3em;font-size:.85em;color:#666}"
)

STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode("ascii")).digest()).decode()
"""CSP source expression that allows exactly the STYLE block."""


def format_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d %B %Y, %H:%M UTC")


def mask_address(address: str) -> str:
    """Return ``address`` with all but the first letter of the local part hidden, as in
    ``j***@example.org``: enough for recipients to recognise their address, too
    little for someone holding the link to learn it."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address[:1] + "***"
    return f"{local[:1]}***@{domain}"


def _document(organisation: str, title: str, body: str) -> str:
    org = escape(organisation)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{escape(title)} - {org}</title>"
        f"<style>{STYLE}</style></head>\n"
        f"<body><h1>{escape(title)}</h1>\n{body}\n"
        f"<footer>Secure message portal of {org}</footer></body></html>\n"
    )


def _button_form(action: str, label: str) -> str:
    return (
        f'<form method="post" action="{escape(action)}">'
        f'<button type="submit">{escape(label)}</button></form>'
    )


def _notice(text: str | None) -> str:
    return f'<p class="notice">{escape(text)}</p>' if text else ""


def not_found(organisation: str) -> str:
    """Render the one page for a link that is unknown, mistyped, expired or revoked.
    It does not say which, so the page reveals nothing about other links."""
    return _document(
        organisation,
        "Message not available",
        "<p>This link does not lead to a message. It may be mistyped, its pickup period "
        "may have ended, or the sender may have withdrawn the message.</p>"
        "<p>If you still need the message, ask its sender to send it again.</p>",
    )


def landing(
    organisation: str,
    *,
    sender: str,
    recipient: str,
    expires: float,
    code_action: str,
    notice: str | None = None,
) -> str:
    body = (
        f"{_notice(notice)}"
        f"<p><strong>{escape(visible_text(sender))}</strong> sent a secure message to "
        f"<strong>{escape(mask_address(recipient))}</strong>.</p>"
        f"<p>It can be picked up until {escape(format_time(expires))}. After that it is "
        "deleted.</p>"
        "<p>To open it, request a one-time code. The code is sent to the address above, "
        "to check that you can read mail sent to it.</p>"
        f"{_button_form(code_action, 'Send me a code')}"
    )
    return _document(organisation, "Secure message", body)


def code_entry(
    organisation: str,
    *,
    recipient: str,
    verify_action: str,
    code_action: str,
    notice: str | None = None,
) -> str:
    body = (
        f"{_notice(notice)}"
        f"<p>If a code was requested, it was sent to "
        f"<strong>{escape(mask_address(recipient))}</strong>. "
        "Enter it here to open the message.</p>"
        f'<form method="post" action="{escape(verify_action)}">'
        '<p><label for="code">Code</label><br>'
        '<input id="code" name="code" type="text" inputmode="numeric" '
        'autocomplete="one-time-code" maxlength="20" required autofocus></p>'
        '<p><button type="submit">Open the message</button></p></form>'
        "<p>No code arrived, or it expired?</p>"
        f"{_button_form(code_action, 'Send me a new code')}"
    )
    return _document(organisation, "Enter your code", body)


def new_code_needed(organisation: str, *, reason: str, code_action: str) -> str:
    body = f"<p>{escape(reason)}</p>{_button_form(code_action, 'Send me a new code')}"
    return _document(organisation, "Request a new code", body)


def message_page(
    organisation: str,
    view: MessageView,
    *,
    expires: float,
    download_action: str,
    part_action: str,
    logout_action: str,
    notice: str | None = None,
) -> str:
    """Render the message. ``part_action`` is the download URL without the part number,
    and ``notice`` replaces the note on a message without text."""
    rows = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in view.headers
    )
    texts = "".join(f"<pre>{escape(text)}</pre>" for text in view.texts)
    if view.cut:
        texts += (
            "<p>The text is longer than this page shows. Download the whole message "
            "for the rest.</p>"
        )
    if not view.texts and notice is None:
        texts = "<p>This message has no text to show; its content is in the attachments.</p>"
    body = (
        f"{_notice(notice)}<table>{rows}</table>\n{texts}\n"
        f"{_attachment_list(view.attachments, part_action)}"
        f'<p><a href="{escape(download_action)}">Download the whole message (.eml)</a></p>'
        f"<p>This message is deleted on {escape(format_time(expires))}.</p>"
        f"{_button_form(logout_action, 'Sign out')}"
    )
    return _document(organisation, "Secure message", body)


def _attachment_list(attachments: Iterable[Attachment], part_action: str) -> str:
    attachments = list(attachments)
    if not attachments:
        return ""
    items = "".join(
        f'<li><a href="{escape(part_action)}{attachment.number}">'
        f"{escape(attachment.filename)}</a> ({escape(attachment.content_type)}, "
        f"{_size_text(attachment.size)})</li>"
        for attachment in attachments
    )
    explanation = "Files are downloaded, never opened in this page."
    if any(attachment.content_type == "text/html" for attachment in attachments):
        explanation += " The HTML version of the text is listed here too."
    return f"<h2>Attachments</h2><p>{explanation}</p><ul>{items}</ul>"


def _size_text(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def signed_out(organisation: str, *, landing_action: str) -> str:
    body = (
        "<p>You are signed out. The message stays available through your link until it "
        f'expires.</p><p><a href="{escape(landing_action)}">Back to the message</a></p>'
    )
    return _document(organisation, "Signed out", body)


def problem(organisation: str, title: str, text: str) -> str:
    """Render an error page: rate limit, relay down, forbidden request, internal error."""
    return _document(organisation, title, f"<p>{escape(text)}</p>")
