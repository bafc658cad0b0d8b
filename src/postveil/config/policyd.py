"""The ``policyd`` section: listeners, domain facts cache, MTA-STS, probes and monitoring."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from postveil.config.types import Duration, Section

_LISTEN_RE = re.compile(r"^(unix:/.+|inet:(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):\d{1,5})$")
_PROTOCOLS_RE = re.compile(r"^[!<>=A-Za-z0-9.:, ]+$")
_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?")

LOWEST_RETRY_INTERVAL = 300.0
"""RFC 8461 section 10.3 limits retries of a failing policy to one per five minutes."""


def _check_listen(value: str) -> str:
    if not _LISTEN_RE.match(value):
        raise ValueError(
            f"invalid listen address {value!r}: expected 'unix:/absolute/path' "
            "or 'inet:host:port', for example 'inet:127.0.0.1:10461'"
        )
    return value


class PolicydSection(Section):
    socketmap_listen: str = "inet:127.0.0.1:10461"
    """Listener for Postfix ``smtp_tls_policy_maps = socketmap:...:postveil``."""

    policy_listen: str = "inet:127.0.0.1:10462"
    """Listener for Postfix ``check_policy_service``."""

    cache_backend: Literal["sqlite", "redis"] = "sqlite"
    """Where domain facts live: one SQLite file (WAL) or a Redis server shared by several MTAs."""

    cache_path: str = "/var/lib/postveil/tlsfacts.sqlite3"
    """SQLite file of the domain facts cache (``cache_backend: sqlite``)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis server of the domain facts cache (``cache_backend: redis``)."""

    redis_prefix: str = "postveil:tlsfacts:"
    """Prefix of every Redis key postveil writes."""

    answer_cache_ttl: Duration = 5.0
    """How long the daemon reuses a computed socketmap answer that requires TLS before
    reading the cache again.

    Answers without a TLS requirement (NOTFOUND, ``may``) are never reused, so a raised
    requirement reaches Postfix at once. A lowered one (``postveil domain set`` or
    ``unset``) reaches it after at most this long. ``0s`` reads the shared cache on
    every request."""

    postfix_version: str | None = None
    """Postfix version that gates reply attributes (``servername=`` needs 3.4, TLSRPT 3.10).

    Unset: read once at start from ``postconf -d -h mail_version``."""

    protocols: str = ">=TLSv1.2"
    """``protocols=`` attribute added to every level that requires TLS."""

    tls_exclusive_senders: list[str] = []
    """Envelope senders (``user@example.org``) or sender domains (``@example.org``) whose
    mail may only leave over required TLS: recipients in other domains are rejected at RCPT."""

    lookup_timeout: Duration = 20.0
    """Longest time a socketmap or policy request waits for a live lookup of an unknown domain;
    then the reply is a temporary failure."""

    no_policy_recheck: Duration = 3600.0
    """How long a domain without an MTA-STS TXT record is trusted to still have none."""

    recheck_interval: Duration = 3600.0
    """How often a known domain's MTA-STS TXT record (for a new policy id) and its TLSA
    records are looked up again."""

    refresh_before_expiry: Duration = 86400.0
    """A cached MTA-STS policy is fetched again this long before its max_age runs out."""

    failed_retry_interval: Duration = 300.0
    """Least time between two fetch attempts for a domain whose policy fetch failed (>= 5m)."""

    mta_sts_ca_file: str | None = None
    """CA bundle that validates MTA-STS policy hosts. Unset: the system's default CAs."""

    mta_sts_https_port: int = 443
    """TCP port of the MTA-STS policy host (443 except in tests)."""

    mta_sts_fetch_timeout: Duration = 10.0
    """Whole-request timeout of one MTA-STS policy fetch."""

    mta_sts_max_body: int = 65536
    """Largest policy body accepted, in bytes (RFC 8461 suggests 64 KiB)."""

    smtp_port: int = 25
    """TCP port of the MX hosts that probes connect to (25 except in tests)."""

    probe_interval: Duration = 86400.0
    """How often each MX of a known domain is probed for STARTTLS."""

    probe_new_domain_delay: Duration = 60.0
    """Delay before the first probe of a newly seen domain."""

    probe_concurrency: int = 10
    """Largest number of probes in flight at once."""

    probe_timeout: Duration = 30.0
    """Whole-probe timeout for one MX host (connect, EHLO, STARTTLS, handshake)."""

    probe_ca_file: str | None = None
    """CA bundle used to judge MX certificates in probes. Unset: the system's default CAs."""

    probe_helo_name: str = "localhost"
    """EHLO name the probe sends."""

    downgrade_after_failed_probes: int | None = None
    """Drop the TLS requirement learned by monitoring after this many consecutive probes
    without STARTTLS. Unset (the default): never; a domain that once offered TLS stays required."""

    scheduler_interval: Duration = 60.0
    """How often the scheduler looks for due refreshes and probes."""

    @field_validator("socketmap_listen", "policy_listen")
    @classmethod
    def _check_listeners(cls, value: str) -> str:
        return _check_listen(value)

    @field_validator("postfix_version")
    @classmethod
    def _check_version(cls, value: str | None) -> str | None:
        if value is not None and not _VERSION_RE.match(value):
            raise ValueError(f"invalid postfix_version {value!r}: expected for example '3.7.11'")
        return value

    @field_validator("protocols")
    @classmethod
    def _check_protocols(cls, value: str) -> str:
        if not _PROTOCOLS_RE.match(value) or " " in value.strip():
            raise ValueError(
                f"invalid protocols {value!r}: expected Postfix syntax without spaces, "
                "for example '>=TLSv1.2'"
            )
        return value.strip()

    @field_validator("tls_exclusive_senders")
    @classmethod
    def _check_senders(cls, value: list[str]) -> list[str]:
        for entry in value:
            if "@" not in entry or entry.count("@") != 1 or entry.endswith("@"):
                raise ValueError(
                    f"invalid sender {entry!r}: expected 'user@example.org' or '@example.org'"
                )
        return [entry.lower() for entry in value]

    @field_validator(
        "mta_sts_https_port", "smtp_port"
    )
    @classmethod
    def _check_port(cls, value: int) -> int:
        if not 0 < value < 65536:
            raise ValueError(f"invalid port {value}: expected 1-65535")
        return value

    @field_validator("probe_concurrency", "mta_sts_max_body")
    @classmethod
    def _check_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"invalid value {value}: expected a positive integer")
        return value

    @field_validator("downgrade_after_failed_probes")
    @classmethod
    def _check_downgrade(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"invalid downgrade_after_failed_probes {value}: expected 1 or more")
        return value

    @model_validator(mode="after")
    def _check_retry(self) -> PolicydSection:
        if self.failed_retry_interval < LOWEST_RETRY_INTERVAL:
            raise ValueError(
                f"failed_retry_interval {self.failed_retry_interval:g}s is too short: "
                "RFC 8461 allows at most one retry per five minutes (use 5m or more)"
            )
        return self
