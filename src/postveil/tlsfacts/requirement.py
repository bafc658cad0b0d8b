"""The TLS requirement of a recipient domain: one pure function shared by both daemons.

Rules, first match wins:

1. ``override``: the admin set a level with ``postveil domain set``.
2. ``dane``: DNSSEC-validated TLSA records exist for the MX hosts. Usable records
   give ``dane-only``; only unusable records give ``encrypt`` (RFC 7672 section 2.2).
3. ``mta-sts``: a valid policy in ``enforce`` mode gives ``secure`` with ``match=``
   patterns taken from the policy's ``mx`` lines.
4. ``monitoring``: a probe once saw STARTTLS, so ``encrypt``. It is dropped only when
   ``downgrade_after_failed_probes`` is set and that many probes in a row failed.
5. ``none``: no requirement; the socketmap answers NOTFOUND and Postfix applies
   its own default (``smtp_tls_security_level``).

The policy postveil-policyd returns to Postfix is ``enforced_requirement``: the rules above, raised
to ``encrypt`` (rule ``held``) while mail that postveil-milter accepted on the condition
of TLS may still be in Postfix's queue. The milter routes by ``tls_requirement`` alone,
so a hold never makes new mail count as TLS-protected.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from postveil.config.policyd import PolicydSection
from postveil.tlsfacts.facts import DomainFacts, RequirementEvent

TLS_REQUIRED_LEVELS = frozenset({"encrypt", "dane-only", "verify", "secure"})
"""Postfix levels that never fall back to plaintext."""

OVERRIDE_LEVELS = ("none", "may", "encrypt", "dane", "dane-only", "verify", "secure")
"""Levels ``postveil domain set --tls`` accepts (``fingerprint`` needs data we do not store)."""

SERVERNAME_MIN_VERSION = (3, 4)
TLSRPT_MIN_VERSION = (3, 10)


@dataclass(frozen=True, slots=True)
class Requirement:
    """A domain's TLS requirement, its Postfix policy and why it was chosen."""

    domain: str
    level: str | None
    """Postfix TLS security level, or None for no requirement (socketmap NOTFOUND)."""
    rule: str
    """Name of the rule that fired: ``override``, ``dane``, ``mta-sts``, ``monitoring``,
    ``none``, or ``held`` (from ``enforced_requirement`` only)."""
    reason: str
    """One sentence for logs, the audit trail and SMTP reply text."""
    match: tuple[str, ...] = ()
    """Postfix ``match=`` patterns (``secure`` from MTA-STS)."""
    protocols: str | None = None
    sts_mx: tuple[str, ...] = ()
    """MTA-STS ``mx`` patterns as published, for the TLSRPT attributes."""
    sts_max_age: int | None = None

    def sts_policy_lines(self) -> list[str]:
        """Rebuild the MTA-STS policy text, one line per key, for TLSRPT ``policy_string``."""
        lines = ["version: STSv1", "mode: enforce"]
        lines.extend("mx: " + pattern for pattern in self.sts_mx)
        if self.sts_max_age is not None:
            lines.append(f"max_age: {self.sts_max_age}")
        return lines

    @property
    def requires_tls(self) -> bool:
        return self.level in TLS_REQUIRED_LEVELS

    def policy_line(self, postfix_version: tuple[int, ...]) -> str | None:
        """Build the ``smtp_tls_policy_maps`` value, or None for NOTFOUND.

        ``postfix_version`` gates attributes older Postfix versions reject:
        ``servername=`` (3.4) and the TLSRPT ``policy_*`` attributes (3.10).
        """
        if self.level is None:
            return None
        parts = [self.level]
        if self.match:
            parts.append("match=" + ":".join(self.match))
        if self.level in ("secure", "verify") and postfix_version >= SERVERNAME_MIN_VERSION:
            parts.append("servername=hostname")
        if self.protocols:
            parts.append("protocols=" + self.protocols)
        if self.rule == "mta-sts" and postfix_version >= TLSRPT_MIN_VERSION:
            # NOTE: never run against a Postfix 3.10 build (Debian 12 ships 3.7); the
            # attributes follow what postfix-mta-sts-resolver 1.5 sends to Postfix 3.10.
            parts.append("policy_type=sts")
            parts.append("policy_domain=" + self.domain)
            parts.extend("mx_host_pattern=" + pattern for pattern in self.sts_mx)
            parts.extend("{ policy_string = " + line + " }" for line in self.sts_policy_lines())
        return " ".join(parts)


def postfix_match_pattern(mx_pattern: str) -> str:
    """Translate an MTA-STS ``mx`` pattern to a Postfix ``match=`` pattern.

    ``*.example.org`` becomes ``.example.org``. NOTE: Postfix checks the server
    certificate's names against these patterns, and ``.example.org`` also matches names
    two or more labels deep, where MTA-STS allows exactly one label.
    """
    if mx_pattern.startswith("*."):
        return mx_pattern[1:]
    return mx_pattern


def mx_matches_pattern(mx_host: str, pattern: str) -> bool:
    """Check an MX host name against an MTA-STS ``mx`` pattern (RFC 8461 section 4.1).

    A leading ``*.`` matches exactly one label: ``*.example.org`` matches
    ``mx.example.org`` but neither ``example.org`` nor ``a.b.example.org``.
    """
    host = mx_host.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return host == pattern


def record_requirement(
    old: DomainFacts | None, new: DomainFacts, config: PolicydSection, *, now: float
) -> tuple[DomainFacts, RequirementEvent | None, str | None]:
    """Prepare ``new`` for storing: note its current requirement and detect a change.

    Returns the facts to store, the event when the level differs from the one recorded
    with ``old`` (None for a new domain without a requirement), and the rule that was in
    force before. Pure.
    """
    after = tls_requirement(new, config, now=now)
    previous_level = old.recorded_level if old is not None else None
    previous_rule = old.recorded_rule if old is not None else None
    stored = replace(new, recorded_level=after.level, recorded_rule=after.rule)
    if previous_level == after.level:
        return stored, None, previous_rule
    event = RequirementEvent(new.domain, previous_level, after.level, after.rule, after.reason, now)
    return stored, event, previous_rule


def tls_requirement(facts: DomainFacts, config: PolicydSection, *, now: float) -> Requirement:
    """Decide the TLS requirement of ``facts.domain`` at time ``now`` (seconds since epoch).

    Pure: reads only its arguments. ``config`` supplies ``protocols`` and
    ``downgrade_after_failed_probes``.
    """
    domain = facts.domain
    protocols = config.protocols

    if facts.override is not None:
        level = facts.override
        return Requirement(
            domain,
            level,
            "override",
            f"the administrator set TLS level {level} for {domain}",
            protocols=protocols if level in TLS_REQUIRED_LEVELS else None,
        )

    dane = facts.dane
    if dane is not None and dane.tlsa_present and dane.validated:
        if dane.usable:
            return Requirement(
                domain,
                "dane-only",
                "dane",
                f"{domain} publishes DNSSEC-validated TLSA records for its MX hosts",
                protocols=protocols,
            )
        return Requirement(
            domain,
            "encrypt",
            "dane",
            f"{domain} publishes DNSSEC-validated TLSA records, none of them usable",
            protocols=protocols,
        )

    sts = facts.sts
    if sts is not None and sts.mode == "enforce" and sts.is_valid(now):
        return Requirement(
            domain,
            "secure",
            "mta-sts",
            f"{domain} publishes an MTA-STS policy in enforce mode",
            match=tuple(dict.fromkeys(postfix_match_pattern(p) for p in sts.mx)),
            protocols=protocols,
            sts_mx=sts.mx,
            sts_max_age=sts.max_age,
        )

    if facts.tls_first_seen is not None:
        limit = config.downgrade_after_failed_probes
        if limit is None or facts.failed_probes < limit:
            return Requirement(
                domain,
                "encrypt",
                "monitoring",
                f"{domain} has offered STARTTLS before, so TLS stays required",
                protocols=protocols,
            )
        return Requirement(
            domain,
            None,
            "none",
            f"{domain} offered no STARTTLS in {facts.failed_probes} probes in a row",
        )

    return Requirement(domain, None, "none", f"no TLS requirement is known for {domain}")


def enforced_requirement(facts: DomainFacts, config: PolicydSection, *, now: float) -> Requirement:
    """Return the requirement Postfix gets: ``tls_requirement``, or ``encrypt`` while a
    TLS hold lasts.

    When postveil-milter routes a recipient by ``tls``, the message leaves the milter
    in plaintext form and Postfix's TLS policy, looked up at each delivery attempt,
    is what protects it. If the requirement lapsed before delivery (an admin unset an
    override, an MTA-STS policy expired, probes failed), a deferred message would go
    out in plaintext. The milter therefore records a hold (``milter.tls_hold``), and
    until it ends the domain's level is at least ``encrypt``. Pure.

    NOTE: the hold does not record the level the milter relied on, so a lapsed
    ``secure`` or ``dane-only`` requirement falls back to unauthenticated ``encrypt``.
    """
    requirement = tls_requirement(facts, config, now=now)
    held_until = facts.tls_held_until
    if requirement.requires_tls or held_until is None or now >= held_until:
        return requirement
    try:
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(held_until))
    except (OverflowError, ValueError, OSError):
        until = "further notice (the stored end of the hold is out of range)"
    return Requirement(
        facts.domain,
        "encrypt",
        "held",
        f"mail for {facts.domain} was accepted on the condition of TLS and may still be "
        f"queued, so TLS stays required until {until}",
        protocols=config.protocols,
    )
