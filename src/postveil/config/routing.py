"""The ``routing`` section: triggers, message classes and the methods each class may use."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from postveil.config.types import Section

MethodName = Literal["plain", "tls", "pgp", "smime", "portal", "drop"]
"""Delivery methods a class may list; see docs/milter.md for what each one does."""

ForcedMethodName = Literal["pgp", "smime", "portal"]

_HEADER_NAME_RE = re.compile(r"^[!-9;-~]+$")
_TERMINAL_METHODS = ("plain", "drop")

SUBJECT_COPIES = ("Thread-Topic",)
"""Headers that repeat the Subject: Microsoft Outlook and Exchange write Thread-Topic
with the Subject's text. They travel inside an encrypted copy, never outside it."""


class ClassMethods(Section):
    """Ordered method lists, one per message class. The first available method wins."""

    clean: list[MethodName] = ["plain"]
    sensitive: list[MethodName] = ["tls", "pgp", "smime", "portal"]
    escalated: list[MethodName] = ["pgp", "smime", "portal"]
    bulk: list[MethodName] = ["tls", "drop"]
    forced_pgp: list[MethodName] = ["pgp"]
    """Used when the Subject carries a tag that maps to ``pgp`` (default ``[pgp]``)."""

    forced_smime: list[MethodName] = ["smime"]
    forced_portal: list[MethodName] = ["portal"]

    @model_validator(mode="after")
    def _check_lists(self) -> ClassMethods:
        for name, methods in self.model_dump().items():
            if not methods:
                raise ValueError(f"methods.{name}: the list is empty; give at least one method")
            if len(set(methods)) != len(methods):
                raise ValueError(f"methods.{name}: {methods} lists a method twice")
            if name != "clean" and "plain" in methods:
                raise ValueError(
                    f"methods.{name}: 'plain' would deliver mail that needs protection without "
                    "it; use tls, pgp, smime, portal or drop"
                )
            for terminal in _TERMINAL_METHODS:
                if terminal in methods[:-1]:
                    raise ValueError(
                        f"methods.{name}: {terminal!r} is always available, so the methods "
                        f"after it would never be used; put it last"
                    )
        return self


class RoutingSection(Section):
    escalate_tags: list[str] = ["[secure]", "[encrypt]"]
    """Subject tags that raise a message to the ``escalated`` class (case-insensitive)."""

    method_tags: dict[str, ForcedMethodName] = {
        "[pgp]": "pgp",
        "[smime]": "smime",
        "[portal]": "portal",
    }
    """Subject tags that force one method (class ``forced_<method>``)."""

    trigger_header: str = "X-Postveil-Protect"
    """Header set by automated senders (EHR systems). Its presence escalates; a value of
    ``pgp``, ``smime`` or ``portal`` forces that method. Removed before delivery."""

    bulk_senders: list[str] = []
    """Envelope senders of the ``bulk`` class: ``user@example.org`` or ``@example.org``."""

    methods: ClassMethods = ClassMethods()

    no_method_action: Literal["reject", "remove_and_notify"] = "reject"
    """When a recipient has no acceptable method: reject the whole message with
    ``550 5.7.1`` naming those recipients, or remove them and send the sender a notice."""

    notice_from: str = "postmaster@localhost"
    """From address of the notice sent when recipients are removed."""

    notice_next_step: str | None = None
    """One more item for the notice's list of next steps, such as how to reach the IT
    help desk. One line of plain text; null adds nothing."""

    outer_subject: str = "Encrypted message"
    """Subject shown outside an encrypted message; the real one travels inside."""

    inner_headers: list[str] = ["From", "To", "Cc", "Date", "Reply-To", "Message-ID"]
    """Headers copied into the encrypted part besides Subject and the Content-* headers."""

    outer_headers_allowed: list[str] = []
    """Header names kept outside an encrypted copy besides the built-in list
    (``postveil.crypto.protect.OUTER_HEADERS``). Every other header moves inside."""

    mark_protected_headers: bool = True
    """Add ``protected-headers="v1"`` to the inner Content-Type. Thunderbird writes this
    marker (from draft-autocrypt-lamps-protected-headers) on its own encrypted mail, and
    clients that read it show the inner Subject in place of the outer one."""

    @field_validator("escalate_tags")
    @classmethod
    def _check_tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not tag.strip():
                raise ValueError("invalid subject tag '': a tag must contain a visible character")
        return value

    @field_validator("method_tags")
    @classmethod
    def _check_method_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for tag in value:
            if not tag.strip():
                raise ValueError("invalid subject tag '': a tag must contain a visible character")
        return value

    @field_validator("trigger_header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        if not _HEADER_NAME_RE.match(value):
            raise ValueError(
                f"invalid header name {value!r}: expected printable ASCII without ':' or spaces"
            )
        return value

    @field_validator("outer_headers_allowed")
    @classmethod
    def _check_outer_headers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _HEADER_NAME_RE.match(name):
                raise ValueError(
                    f"invalid header name {name!r}: expected printable "
                    "ASCII without ':' or spaces, such as Feedback-ID"
                )
            lower = name.lower()
            if lower.startswith("content-") or lower == "mime-version":
                raise ValueError(
                    f"{name!r} describes the original content, which "
                    "travels inside the encrypted part; the encryption writes its own "
                    "Content-* headers outside. Remove it from the list"
                )
            if lower in {copy.lower() for copy in SUBJECT_COPIES}:
                raise ValueError(
                    f"{name!r} repeats the Subject, which travels "
                    "only inside the encrypted part. Remove it from the list"
                )
            if lower in {"bcc", "resent-bcc"}:
                raise ValueError(
                    f"{name!r} would show blind copy recipients to the others. Remove it "
                    "from the list"
                )
        return value

    @field_validator("bulk_senders")
    @classmethod
    def _check_senders(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _, at, domain = pattern.rpartition("@")
            if not at or not domain or " " in pattern:
                raise ValueError(
                    f"invalid bulk sender {pattern!r}: expected 'user@example.org' or '@example.org'"
                )
        return value

    @model_validator(mode="after")
    def _check_outer_trigger(self) -> RoutingSection:
        lower = self.trigger_header.lower()
        if any(name.lower() == lower for name in self.outer_headers_allowed):
            raise ValueError(
                f"outer_headers_allowed: {self.trigger_header!r} is the trigger header, "
                "which is removed before delivery. Remove it from the list"
            )
        return self

    @field_validator("notice_next_step")
    @classmethod
    def _check_next_step(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip() or any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValueError(
                f"invalid notice_next_step {value!r}: expected one line of text without "
                "control characters, or null"
            )
        return value.strip()

    @field_validator("outer_subject")
    @classmethod
    def _check_subject(cls, value: str) -> str:
        if not value.isascii() or "\n" in value or "\r" in value:
            raise ValueError(f"invalid outer_subject {value!r}: expected one line of ASCII text")
        return value
