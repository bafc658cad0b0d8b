"""Per-domain TLS facts and the TLS requirement, shared by postveil-policyd and the milter.

API for the milter (everything else here is internal)::

    from postveil.tlsfacts import open_cache, tls_requirement

    cache = open_cache(config.policyd)           # SQLite or Redis, per the config
    facts = cache.get("example.org")             # DomainFacts, or None if never seen
    if facts is None:
        facts = DomainFacts("example.org")       # unknown domain: no requirement yet
    requirement = tls_requirement(facts, config.policyd, now=time.time())
    requirement.requires_tls                     # True: Postfix will never send plaintext
    requirement.level, requirement.rule, requirement.reason

``cache.get`` raises :class:`CacheError` (a ``TemporaryFailure``) when the store cannot
be read; treat that as a temporary failure, never as "no TLS". ``cache.get`` is
synchronous and safe to call from several threads. Domain names are lower case,
without a trailing dot.
"""

from postveil.tlsfacts.cache import CacheError, FactsCache, open_cache
from postveil.tlsfacts.facts import DaneFacts, DomainFacts, ProbeResult, StsPolicy
from postveil.tlsfacts.requirement import Requirement, enforced_requirement, tls_requirement

__all__ = [
    "CacheError",
    "DaneFacts",
    "DomainFacts",
    "FactsCache",
    "ProbeResult",
    "Requirement",
    "StsPolicy",
    "enforced_requirement",
    "open_cache",
    "tls_requirement",
]
