"""The ``portal`` section: where messages for portal recipients go instead."""

from __future__ import annotations

from pydantic import field_validator

from postveil.config.routing import _HEADER_NAME_RE
from postveil.config.types import Section


class PortalSection(Section):
    intake_address: str | None = None
    """Address of the portal's mail intake. Null: no portal, so the ``portal`` method is
    never available."""

    recipient_header: str = "X-Postveil-Portal-Recipient"
    """Header added once per original recipient to the copy sent to the portal."""

    @field_validator("intake_address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is not None and (value.count("@") != 1 or " " in value or value.startswith("@")):
            raise ValueError(f"invalid intake_address {value!r}: expected 'user@example.org'")
        return value

    @field_validator("recipient_header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        if not _HEADER_NAME_RE.match(value):
            raise ValueError(
                f"invalid header name {value!r}: expected printable ASCII without ':' or spaces"
            )
        return value
