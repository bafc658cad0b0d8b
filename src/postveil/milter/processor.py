"""The milter's per-configuration state and its decision for one message.

A :class:`MessageProcessor` is built once per configuration (and again on reload). It
contains the detector, the certificate store, the GnuPG keyring, the domain facts cache
and the audit log, and turns one received message into an :class:`Outcome`. It never
talks to Postfix: the callbacks in :mod:`postveil.milter.session` apply the outcome.

Domains without facts: postveil-policyd discovers a domain when Postfix first queries it
about the domain, but a message can reach end of data before that finishes. For a
domain missing from the cache the milter therefore asks postveil-policyd over its
socketmap, which looks the domain up live and stores the facts before replying,
within ``milter.tls_lookup_timeout``. It asks only when routing would otherwise pass
over TLS for the domain (sensitive mail, not clean mail), and defers the message when
the query fails. A cache that cannot be read is a temporary
failure too.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence

from postveil.audit import AuditLog, MessageDecision
from postveil.audit import RecipientDecision as AuditRecipient
from postveil.classifier.client import SecondOpinion
from postveil.config import Config
from postveil.crypto.pipeline import Outcome, TlsRequirement, build_context, process_message
from postveil.detection import Detector
from postveil.milter.reinjected import ReinjectStore
from postveil.milter.tlslookup import TlsLookupFailure, query_policy
from postveil.postfix_nexthops import NextHopRoutes
from postveil.postfix_rewrites import RewriteMapsWatcher
from postveil.routing.decide import Method
from postveil.tlsfacts import DomainFacts, FactsCache, open_cache, tls_requirement
from postveil.tlsfacts.names import ascii_domain

log = logging.getLogger("postveil.milter")

_TAG_WORD_RE = re.compile(r"[^a-z0-9]+")

TLS_FACTS_NOT_LOOKED_UP = "no TLS facts for the domain yet"


class MessageProcessor:
    """Detector, keys, certificates, facts cache, store of re-injected copies and audit
    log of one configuration."""

    def __init__(self, config: Config, *, audit: AuditLog | None = None, cache: FactsCache | None = None) -> None:
        self.config = config
        self.detector = Detector(config.detection)
        self.context = build_context(config)
        self.cache = cache if cache is not None else open_cache(config.policyd)
        self.audit = audit if audit is not None else AuditLog(config.audit, program="postveil-milter")
        self.rewrites = _read_rewrites(config) if config.milter.check_recipient_rewrites else None
        self.routes = _read_routes(config) if config.milter.check_recipient_rewrites else None
        section = config.milter
        # The file is opened at its first use, by a message with copies to re-inject.
        self.reinject_store = (
            ReinjectStore(
                section.reinject_store,
                expiry=section.reinject_store_expiry,
                max_entries=section.reinject_store_max_entries,
            )
            if section.reinject_store is not None
            else None
        )
        self.second_opinion = None
        if config.classifier.enabled:
            self.second_opinion = SecondOpinion(config.classifier, self.detector)
            log.info(
                "asking postveil-classifierd at %s about mail the rules pass (ask: %s, on_failure: %s)",
                config.classifier.socket,
                config.classifier.ask,
                config.classifier.on_failure,
            )

    def close(self) -> None:
        self.cache.close()
        self.audit.close()
        if self.reinject_store is not None:
            self.reinject_store.close()

    def tls_requirements(self, recipients: Sequence[str], *, look_up: set[str] = frozenset()) -> dict[str, TlsRequirement]:
        """Return each recipient's domain TLS requirement from the shared cache.

        A domain missing from the cache gets the reason TLS_FACTS_NOT_LOOKED_UP,
        unless it is in ``look_up``: then postveil-policyd is asked first. A recipient
        that Postfix's rewrite maps may move to another domain does not require TLS
        here, so routing takes its next method. Raises CacheError, TlsLookupFailure or
        RewriteLookupError (all TemporaryFailure).
        """
        domains = list(dict.fromkeys(recipient_domain(recipient) for recipient in recipients))
        facts = self._read_facts(domains)
        to_query = [domain for domain in domains if _unknown(facts[domain]) and domain in look_up]
        for domain in to_query:
            query_policy(self.config.policyd.socketmap_listen, domain, self.config.milter.tls_lookup_timeout)
        if to_query:
            facts.update(self._read_facts(to_query))

        now = time.time()
        by_domain = {
            domain: self._domain_requirement(domain, facts[domain], now, domain in look_up) for domain in domains
        }
        requirements = {recipient: by_domain[recipient_domain(recipient)] for recipient in recipients}
        # Postfix applies its rewrite maps after routing, so a recipient it moves to
        # another domain would be delivered under that domain's TLS policy.
        needing_tls = [recipient for recipient, requirement in requirements.items() if requirement.required]
        if self.rewrites is not None and needing_tls:
            for recipient, reason in self.rewrites.moved(needing_tls).items():
                requirements[recipient] = TlsRequirement(False, reason)
        # Postfix looks the TLS policy up by next hop, so a recipient sent through a
        # relay or another next hop is not held to its own domain's requirement.
        needing_tls = [recipient for recipient, requirement in requirements.items() if requirement.required]
        if self.routes is not None and needing_tls:
            for recipient, reason in self.routes.moved(needing_tls).items():
                requirements[recipient] = TlsRequirement(False, reason)
        return requirements

    def _read_facts(self, domains: Sequence[str]) -> dict[str, DomainFacts | None]:
        """Read each domain's facts from the cache (None: not in it)."""
        return {domain: self.cache.get(domain) for domain in domains}

    def _domain_requirement(self, domain: str, facts: DomainFacts | None, now: float, looked_up: bool) -> TlsRequirement:
        if _unknown(facts) and not looked_up:
            return TlsRequirement(False, TLS_FACTS_NOT_LOOKED_UP)
        requirement = tls_requirement(facts or DomainFacts(domain), self.config.policyd, now=now)
        return TlsRequirement(requirement.requires_tls, requirement.reason)

    def decide(self, raw: bytes, *, queue_id: str, sender: str, recipients: Sequence[str]) -> Outcome:
        """Scan, classify and route one message, render every version to send, and hold
        TLS for the domains of recipients routed by ``tls`` (see :meth:`hold_tls`).

        Raises TemporaryFailure (see :meth:`route`) so the caller defers the message.
        """
        outcome = self.route(raw, queue_id=queue_id, sender=sender, recipients=recipients)
        self.hold_tls(outcome)
        return outcome

    def hold_tls(self, outcome: Outcome) -> None:
        """Keep TLS required for the domains of recipients routed by ``tls``.

        Such a copy leaves the milter unencrypted and relies on Postfix's TLS policy at
        each delivery attempt. The hold makes postveil-policyd keep returning at least
        ``encrypt`` for ``milter.tls_hold`` (rule ``held``), so a requirement that lapses
        while the message is queued cannot turn into plaintext delivery. A stored hold
        that already lasts that long is not written again. Raises CacheError (a
        TemporaryFailure) when the hold cannot be read or stored.

        NOTE: Postfix looks the policy up by next hop, after its cleanup service
        rewrote recipients. Mail sent through ``relayhost`` or a bracketed
        ``transport_maps`` next hop, or a recipient that ``virtual_alias_maps`` or
        ``canonical_maps`` moves to another domain, gets another policy, and neither
        the recipient domain's requirement nor this hold applies to it.
        ``tls_requirements`` keeps such recipients off ``tls`` while
        ``milter.check_recipient_rewrites`` is on.
        """
        domains = {
            recipient_domain(decision.recipient)
            for decision in outcome.decisions
            if decision.method is Method.TLS
        }
        if not domains:
            return
        now = time.time()
        needed = now + self.config.milter.tls_hold
        for domain in sorted(domains):
            # The stored hold is read back, not remembered in this process, because the
            # cache may have been replaced or emptied since this process last wrote it.
            # A damaged hold reads as infinite and is replaced.
            facts = self.cache.get(domain)
            stored = facts.tls_held_until if facts is not None else None
            if stored is not None and needed <= stored < math.inf:
                continue
            # The extra hour lets the next messages within the hour skip the write and
            # still be covered for the whole tls_hold.
            self.cache.hold_tls(domain, needed + _HOLD_REFRESH)

    def route(self, raw: bytes, *, queue_id: str, sender: str, recipients: Sequence[str]) -> Outcome:
        """Scan, classify and route one message, and render every version to send.

        A domain unknown to the cache is looked up through postveil-policyd only when
        routing would otherwise pass over TLS for it. The message is then routed again
        with the new facts. The cache is read only for a message whose class lists the
        tls method, so a broken cache defers protected mail but not clean mail routed
        plain. Raises TemporaryFailure (cache, lookup, key or certificate store,
        encryption) so the caller defers the message.
        """
        if self.second_opinion is None:
            verdict = self.detector.scan_message(raw)
        else:
            verdict, texts = self.detector.scan_message_texts(raw)
            # Raises ClassifierUnavailable (a TemporaryFailure) by classifier.on_failure.
            verdict = self.second_opinion.review(verdict, texts, queue_id=queue_id)

        def route(tls: Callable[[], dict[str, TlsRequirement]]) -> Outcome:
            return process_message(
                raw,
                queue_id=queue_id,
                sender=sender,
                recipients=recipients,
                verdict=verdict,
                tls=tls,
                context=self.context,
                config_version=self.config.version,
            )

        # The facts are read only when the message's class lists the tls method.
        outcome = route(lambda: self.tls_requirements(recipients))
        skipped_tls = f"tls: {TLS_FACTS_NOT_LOOKED_UP}"
        unknown = {
            recipient_domain(decision.recipient)
            for decision in outcome.decisions
            if skipped_tls in decision.skipped
        }
        if not unknown or self.config.milter.tls_lookup_timeout <= 0:
            return outcome
        try:
            tls = self.tls_requirements(recipients, look_up=unknown)
        except TlsLookupFailure as exc:
            log.warning("TLS facts unavailable for %s: %s", ", ".join(sorted(unknown)), exc)
            raise
        return route(lambda: tls)

    def record(self, outcome: Outcome, action: str, extra_tags: Sequence[str] = ()) -> None:
        """Append the audit record of ``outcome``; raises AuditWriteError when it fails."""
        self.audit.record_message(audit_decision(outcome, action, extra_tags))


_HOLD_REFRESH = 3600.0
"""Seconds a TLS hold is written beyond ``milter.tls_hold``, so a busy domain costs one
cache write an hour, not one per message."""


def _read_rewrites(config: Config) -> RewriteMapsWatcher:
    """Return the watcher of Postfix's recipient rewrite maps, logging what it found."""
    rewrites = RewriteMapsWatcher(config.milter.postfix_config_directory)
    if rewrites.problem is not None:
        log.warning(
            "cannot read Postfix's recipient rewrite maps (%s), so every message routed by tls "
            "will be deferred (451) until they can be read. Set milter.postfix_config_directory, "
            "or milter.check_recipient_rewrites: false when Postfix runs on another host.",
            rewrites.problem,
        )
    elif rewrites.maps:
        log.info(
            "recipients routed by tls are looked up in Postfix's %s with postmap", ", ".join(rewrites.maps)
        )
    return rewrites


def _read_routes(config: Config) -> RewriteMapsWatcher:
    """Return the watcher of Postfix's next-hop settings, logging what it found."""
    listen = config.policyd.socketmap_listen

    def read(directory: str) -> NextHopRoutes:
        return NextHopRoutes.from_postfix(directory, socketmap_listen=listen)

    routes = RewriteMapsWatcher(config.milter.postfix_config_directory, reader=read, description="routing settings")
    if routes.problem is not None:
        log.warning(
            "cannot read Postfix's routing settings (%s), so every message routed by tls will be deferred (451) "
            "until they can be read",
            routes.problem,
        )
    elif routes.maps:
        log.info(
            "recipients that Postfix's %s send to another next hop are not counted as protected by tls",
            ", ".join(routes.maps),
        )
    return routes


def _unknown(facts: DomainFacts | None) -> bool:
    """True for a domain never looked up, including one that has only a TLS hold."""
    return facts is None or facts.only_hold


def recipient_domain(address: str) -> str:
    """Return the domain of an address as the facts cache keys it (see ``ascii_domain``)."""
    return ascii_domain(address.rpartition("@")[2])


def audit_decision(outcome: Outcome, action: str, extra_tags: Sequence[str] = ()) -> MessageDecision:
    """Convert a routing outcome into the audit trail's message record.

    A recipient's method is what it actually got: ``reject`` when the whole message
    was rejected, ``drop`` or ``none`` when it was removed, so that searches and reports
    never count an undelivered recipient as protected. The routing reason is kept. The
    message class travels as a ``class:<name>`` tag, and the detection rule that made a
    message sensitive as ``rule:<name>``.
    """
    record = outcome.record
    recipients = []
    for item in record.recipients:
        method = item.method or "none"
        fingerprint = item.fingerprint
        if action == "reject":
            method, fingerprint = "reject", None
        recipients.append(
            AuditRecipient(address=item.recipient, method=method, reason=item.reason[:900], fingerprint=fingerprint)
        )
    tags = [f"class:{record.message_class}"]
    if record.detection_rule is not None:
        # Which detection rule made the message sensitive; "rule:classifier" marks
        # the model's decisions for auditors.
        tags.append(f"rule:{record.detection_rule}")
    if record.classifier_failed:
        # postveil-classifierd did not reply and classifier.on_failure kept the rules'
        # verdict: auditors can list the messages routed without the model.
        tags.append("classifier:unavailable")
    if record.encryption_check != "none":
        # Mail labelled as encrypted by the sender: the format that counted, or the check
        # that failed. The recipients' reasons describe a format that counted.
        outcome_word = "counted" if record.sender_encrypted else "not-counted"
        tags.append(f"sender-encryption:{outcome_word}:{record.encryption_check}")
    tags += [_tag_identifier(tag) for tag in record.tags]
    if outcome.triggers.header_trigger:
        tags.append("header:trigger")
    tags += extra_tags
    return MessageDecision(
        queue_id=record.queue_id,
        sender=record.sender,
        recipients=recipients,
        config_version=record.config_version or "-",
        message_id=record.message_id,
        detections=dict(record.detection_categories),
        tags=tags,
        action=action,
    )


def _tag_identifier(tag: str) -> str:
    """``[secure]`` becomes ``subject:secure``: the audit trail stores tags as identifiers."""
    word = _TAG_WORD_RE.sub("-", tag.lower()).strip("-") or "tag"
    return f"subject:{word}"[:64]
