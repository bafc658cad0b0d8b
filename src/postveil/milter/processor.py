"""The milter's per-configuration state and its decision for one message.

A :class:`MessageProcessor` is built once per configuration (and again on reload). It
holds the detector, the certificate store, the GnuPG keyring, the domain facts cache
and the audit log, and turns one received message into an :class:`Outcome`. It never
talks to Postfix: the callbacks in :mod:`postveil.milter.session` apply the outcome.

Domains without facts: the milter does not look a domain up itself. postveil-policyd
does, live and within ``policyd.lookup_timeout``, when Postfix asks it at RCPT
(``check_policy_service``), so by end of message its facts are in the shared cache.
A domain still without facts counts as not enforcing TLS: sensitive mail for it moves
on to the next method of its class (PGP, S/MIME, portal), which never lowers
protection. A cache that cannot be read is a temporary failure.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from postveil.audit import AuditLog, MessageDecision
from postveil.audit import RecipientDecision as AuditRecipient
from postveil.config import Config
from postveil.crypto import CertificateStore, PgpKeyring, RenderContext, SmimeSigner
from postveil.crypto.pipeline import Outcome, TlsRequirement, process_message
from postveil.detection import Detector
from postveil.tlsfacts import DomainFacts, FactsCache, open_cache, tls_requirement
from postveil.tlsfacts.cache import SqliteFactsCache

log = logging.getLogger("postveil.milter")

_TAG_WORD_RE = re.compile(r"[^a-z0-9]+")


class MessageProcessor:
    """Detector, keys, certificates, facts cache and audit log of one configuration."""

    def __init__(self, config: Config, *, audit: AuditLog | None = None, cache: FactsCache | None = None) -> None:
        self.config = config
        self.detector = Detector(config.detection)
        signer = None
        if config.smime.sign:
            assert config.smime.signing_certificate and config.smime.signing_key
            signer = SmimeSigner.load(config.smime.signing_certificate, config.smime.signing_key)
        self.context = RenderContext(
            routing=config.routing,
            portal=config.portal,
            certificates=CertificateStore(config.smime.certificate_dir, config.smime.trust_store),
            keyring=PgpKeyring(config.pgp.gnupg_home, config.pgp.gpg_binary),
            signer=signer,
        )
        self.cache = cache if cache is not None else open_cache(config.policyd)
        self.audit = audit if audit is not None else AuditLog(config.audit, program="postveil-milter")
        # SqliteFactsCache keeps one connection per Python thread state and closes none
        # before close(). pymilter (1.0.5) creates a new thread state for every SMTP
        # connection, so reading from the callbacks opened, and kept, one database
        # connection with two file descriptors per SMTP connection. One long-lived
        # thread does all SQLite reads instead. Redis clients share a pool and need none.
        self._cache_reader: ThreadPoolExecutor | None = None
        if isinstance(self.cache, SqliteFactsCache):
            self._cache_reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facts-cache")

    def close(self) -> None:
        if self._cache_reader is not None:
            self._cache_reader.shutdown(wait=True)
        self.cache.close()
        self.audit.close()

    def tls_requirements(self, recipients: Sequence[str]) -> dict[str, TlsRequirement]:
        """Return each recipient's domain TLS requirement from the shared cache.

        Raises CacheError (a TemporaryFailure) when the cache cannot be read.
        """
        domains = list(dict.fromkeys(recipient_domain(recipient) for recipient in recipients))
        if self._cache_reader is None:
            facts = self._read_facts(domains)
        else:
            facts = self._cache_reader.submit(self._read_facts, domains).result()
        now = time.time()
        by_domain: dict[str, TlsRequirement] = {}
        for domain in domains:
            requirement = tls_requirement(facts[domain], self.config.policyd, now=now)
            by_domain[domain] = TlsRequirement(requirement.requires_tls, requirement.reason)
        return {recipient: by_domain[recipient_domain(recipient)] for recipient in recipients}

    def _read_facts(self, domains: Sequence[str]) -> dict[str, DomainFacts]:
        """Read each domain's facts; a domain never seen gets empty facts."""
        return {domain: self.cache.get(domain) or DomainFacts(domain) for domain in domains}

    def decide(self, raw: bytes, *, queue_id: str, sender: str, recipients: Sequence[str]) -> Outcome:
        """Scan, classify and route one message, and render every version to send.

        Raises TemporaryFailure (cache, key or certificate store, encryption) so the
        caller defers the message.
        """
        verdict = self.detector.scan_message(raw)
        return process_message(
            raw,
            queue_id=queue_id,
            sender=sender,
            recipients=recipients,
            verdict=verdict,
            tls=self.tls_requirements(recipients),
            context=self.context,
            config_version=self.config.version,
        )

    def record(self, outcome: Outcome, action: str) -> None:
        """Append the audit record of ``outcome``; raises AuditWriteError when it fails."""
        self.audit.record_message(audit_decision(outcome, action))


def recipient_domain(address: str) -> str:
    """Return the lower-case ASCII (IDNA) domain of an address, without a trailing dot."""
    domain = address.rpartition("@")[2].strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def audit_decision(outcome: Outcome, action: str) -> MessageDecision:
    """Convert a routing outcome into the audit trail's message record."""
    record = outcome.record
    recipients = [
        AuditRecipient(
            address=item.recipient,
            method=item.method or "none",
            reason=item.reason[:900],
            fingerprint=item.fingerprint,
        )
        for item in record.recipients
    ]
    tags = [_tag_identifier(tag) for tag in record.tags]
    if outcome.triggers.header_trigger:
        tags.append("header:trigger")
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
