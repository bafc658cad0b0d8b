"""What postveil knows about one recipient domain's TLS, as stored in the facts cache.

All times are POSIX timestamps in seconds. The records are immutable; an update
builds a new :class:`DomainFacts` with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

STS_MODES = ("enforce", "testing", "none")


@dataclass(frozen=True, slots=True)
class StsPolicy:
    """An MTA-STS policy fetched and validated per RFC 8461."""

    policy_id: str
    """The ``id`` of the TXT record that announced this policy."""
    mode: str
    """``enforce``, ``testing`` or ``none``."""
    mx: tuple[str, ...]
    """MX patterns, lower case; ``*.example.org`` matches exactly one label."""
    max_age: int
    """Seconds the policy stays valid after ``fetched_at``."""
    fetched_at: float

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.max_age

    def is_valid(self, now: float) -> bool:
        return now < self.expires_at


@dataclass(frozen=True, slots=True)
class DaneFacts:
    """TLSA records found for the domain's MX hosts (port 25)."""

    tlsa_present: bool
    validated: bool
    """Every MX and TLSA answer carried the resolver's AD (DNSSEC authenticated) bit."""
    usable: bool
    """At least one record is usable for SMTP per RFC 7672 (usage 2 or 3, known selector
    and matching type)."""
    checked_at: float


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One STARTTLS probe of one MX host."""

    mx: str
    probed_at: float
    starttls: bool
    """The server advertised STARTTLS and completed a TLS handshake."""
    tls_version: str | None = None
    cipher: str | None = None
    cert_valid: bool = False
    """The chain validated against the probe CA bundle and the certificate names the MX host."""
    error: str | None = None
    """Category of failure (``connect``, ``no-starttls``, ``handshake``, ``timeout``...)."""


@dataclass(frozen=True, slots=True)
class DomainFacts:
    """Everything the requirement function and the CLI need about one domain."""

    domain: str
    sts: StsPolicy | None = None
    """Last valid MTA-STS policy; kept while valid even when the TXT record disappears."""
    sts_checked_at: float | None = None
    """Last completed TXT lookup (with or without a record)."""
    sts_failed_at: float | None = None
    """Last failed fetch or temporary DNS failure; retries wait ``failed_retry_interval``."""
    sts_error: str | None = None
    dane: DaneFacts | None = None
    probes: tuple[ProbeResult, ...] = ()
    tls_first_seen: float | None = None
    tls_last_seen: float | None = None
    failed_probes: int = 0
    """Consecutive probes in which no MX offered STARTTLS."""
    override: str | None = None
    """Admin-set Postfix TLS level (``postveil domain set``), applied before anything else."""
    first_seen: float | None = None
    """First time a delivery or policy request named this domain."""
    last_probe_at: float | None = None
    recorded_level: str | None = None
    """Requirement level in force when the facts were last stored; a change against it
    becomes an event, including changes caused only by time (an expired policy)."""
    recorded_rule: str | None = None
    tls_held_until: float | None = None
    """Until when TLS stays required because postveil-milter accepted mail for this
    domain on the condition of TLS (see ``enforced_requirement``). The cache keeps it
    apart from the other facts and fills it in on reading; ``to_json`` leaves it out."""

    @property
    def only_hold(self) -> bool:
        """True when nothing is known about the domain but its TLS hold (after ``purge``,
        say): the domain has never been looked up and its requirement is unknown."""
        return replace(self, tls_held_until=None) == DomainFacts(self.domain)

    def to_json(self) -> str:
        data = asdict(self)
        del data["tls_held_until"]
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> DomainFacts:
        """Rebuild facts stored by :meth:`to_json`; raises ValueError on a damaged record.

        Fields this version does not know (written by a later version) are ignored, so
        that a downgrade keeps the facts it can read, STARTTLS history among them.
        """
        try:
            data: dict[str, Any] = json.loads(text)
            sts = data.pop("sts")
            dane = data.pop("dane")
            probes = data.pop("probes")
            data.pop("tls_held_until", None)
            return cls(
                sts=StsPolicy(**{**_known_fields(StsPolicy, sts), "mx": tuple(sts["mx"])}) if sts else None,
                dane=DaneFacts(**_known_fields(DaneFacts, dane)) if dane else None,
                probes=tuple(ProbeResult(**_known_fields(ProbeResult, probe)) for probe in probes),
                **_known_fields(cls, data),
            )
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"damaged domain facts record: {exc}") from exc


def _known_fields(record_type: type, data: dict[str, Any]) -> dict[str, Any]:
    """Return the items of ``data`` that name a field of the dataclass ``record_type``."""
    names = {item.name for item in fields(record_type)}
    return {key: value for key, value in data.items() if key in names}


@dataclass(frozen=True, slots=True)
class RequirementEvent:
    """A change of a domain's TLS requirement, recorded for the audit trail."""

    domain: str
    old_level: str | None
    new_level: str | None
    rule: str
    reason: str
    at: float = field(default=0.0)
