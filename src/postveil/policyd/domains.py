"""Domain facts service: answers "what TLS does this domain need?" for both servers.

It reads the facts cache, discovers unknown domains live (MTA-STS and DANE), runs
refreshes and probes, stores the results and records every change of a domain's
requirement as an event. Protocol servers call :meth:`DomainService.requirement`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from postveil.config.policyd import PolicydSection
from postveil.errors import TemporaryFailure
from postveil.policyd.dane import lookup_dane
from postveil.policyd.dns import DnsClient, DnsTemporaryFailure
from postveil.policyd.mtasts import sts_refresh_due
from postveil.policyd.mtasts_fetch import PolicyFetcher, refresh_sts
from postveil.policyd.probe import Prober
from postveil.tlsfacts.cache import CacheError, FactsCache
from postveil.tlsfacts.facts import DomainFacts, RequirementEvent
from postveil.tlsfacts.requirement import Requirement, tls_requirement

log = logging.getLogger(__name__)
events_log = logging.getLogger("postveil.policyd.events")


class DomainService:
    """Facts, discovery and monitoring of recipient domains, over one facts cache."""

    def __init__(
        self,
        config: PolicydSection,
        cache: FactsCache,
        dns: DnsClient,
        fetcher: PolicyFetcher,
        prober: Prober,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.cache = cache
        self.dns = dns
        self.fetcher = fetcher
        self.prober = prober
        self.clock = clock
        self._inflight: dict[tuple[str, str], asyncio.Task[DomainFacts]] = {}
        self._background: set[asyncio.Task[object]] = set()

    # Cache access: SQLite runs inline, Redis in a worker thread.

    async def _run_cache(self, function: Callable[..., object], *args: object) -> object:
        if self.cache.local:
            return function(*args)
        return await asyncio.to_thread(function, *args)

    async def get_facts(self, domain: str) -> DomainFacts | None:
        """Read the cache; raises CacheError."""
        facts = await self._run_cache(self.cache.get, domain)
        assert facts is None or isinstance(facts, DomainFacts)
        return facts

    async def store(self, old: DomainFacts | None, new: DomainFacts) -> None:
        """Write ``new`` and record an event when the domain's requirement changed."""
        await self._run_cache(self.cache.put, new)
        now = self.clock()
        before = tls_requirement(old, self.config, now=now) if old is not None else None
        after = tls_requirement(new, self.config, now=now)
        old_level = before.level if before is not None else None
        if before is None and after.level is None:
            return
        if old_level != after.level or (before is not None and before.match != after.match):
            event = RequirementEvent(new.domain, old_level, after.level, after.rule, after.reason, now)
            events_log.info(
                "domain %s: TLS requirement changed from %s to %s (rule %s): %s",
                new.domain, old_level or "none", after.level or "none", after.rule, after.reason,
            )
            await self._run_cache(self.cache.add_event, event)

    # Answers for the protocol servers.

    async def requirement(self, domain: str) -> Requirement:
        """Return the domain's requirement; unknown domains are discovered live.

        Raises TemporaryFailure (cache unreadable, DNS failure for an unknown domain,
        or no answer within ``lookup_timeout``): the caller must answer "try later".
        """
        facts = await self.get_facts(domain)
        now = self.clock()
        if facts is None:
            try:
                async with asyncio.timeout(self.config.lookup_timeout):
                    facts = await self._single("discover", domain, self._discover)
            except TimeoutError as exc:
                raise TemporaryFailure(
                    f"lookup of {domain} did not finish within {self.config.lookup_timeout:g}s"
                ) from exc
        elif self._refresh_due(facts, now):
            self.spawn(self._single("refresh", domain, self._refresh))
        return tls_requirement(facts, self.config, now=now)

    async def ensure_known(self, domain: str) -> DomainFacts | None:
        """Return cached facts, starting discovery in the background for a new domain."""
        facts = await self.get_facts(domain)
        if facts is None:
            self.spawn(self._single("discover", domain, self._discover))
        return facts

    async def probe_now(self, domain: str) -> DomainFacts:
        """Discover (if new) and probe the domain before returning; raises TemporaryFailure."""
        await self._single("discover", domain, self._discover_if_new)
        return await self._single("probe", domain, self._probe)

    # Work on one domain, deduplicated so that concurrent requests share one lookup.

    async def _single(
        self, kind: str, domain: str, work: Callable[[str], Awaitable[DomainFacts]]
    ) -> DomainFacts:
        key = (kind, domain)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(work(domain))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _discover_if_new(self, domain: str) -> DomainFacts:
        facts = await self.get_facts(domain)
        if facts is not None:
            return facts
        return await self._discover(domain)

    async def _discover(self, domain: str) -> DomainFacts:
        now = self.clock()
        empty = DomainFacts(domain, first_seen=now)
        facts = await refresh_sts(empty, self.dns, self.fetcher, self.config, now)
        dane = await lookup_dane(self.dns, domain, self.config.smtp_port, now)
        facts = replace(facts, dane=dane)
        # Another process (or the admin) may have stored the domain meanwhile.
        current = await self.get_facts(domain)
        if current is not None:
            facts = replace(facts, override=current.override, first_seen=current.first_seen,
                            probes=current.probes, tls_first_seen=current.tls_first_seen,
                            tls_last_seen=current.tls_last_seen,
                            failed_probes=current.failed_probes,
                            last_probe_at=current.last_probe_at)
        await self.store(current, facts)
        self.schedule_probe(domain, self.config.probe_new_domain_delay)
        log.info("domain %s: discovered (MTA-STS %s, TLSA %s)", domain,
                 facts.sts.mode if facts.sts else "none",
                 "present" if dane.tlsa_present else "none")
        return facts

    def _refresh_due(self, facts: DomainFacts, now: float) -> bool:
        if sts_refresh_due(facts, self.config, now):
            return True
        dane_checked = facts.dane.checked_at if facts.dane is not None else 0.0
        return now - dane_checked >= self.config.recheck_interval

    async def _refresh(self, domain: str) -> DomainFacts:
        old = await self.get_facts(domain)
        if old is None:
            return await self._discover(domain)
        now = self.clock()
        facts = old
        if sts_refresh_due(old, self.config, now):
            try:
                facts = await refresh_sts(facts, self.dns, self.fetcher, self.config, now)
            except DnsTemporaryFailure as exc:
                log.warning("domain %s: MTA-STS refresh failed, will retry: %s", domain, exc)
                facts = replace(facts, sts_failed_at=now, sts_error="dns-temporary")
        try:
            dane = await lookup_dane(self.dns, domain, self.config.smtp_port, now)
            facts = replace(facts, dane=dane)
        except DnsTemporaryFailure as exc:
            log.warning("domain %s: TLSA refresh failed, keeping the old facts: %s", domain, exc)
        current = await self.get_facts(domain)
        if current is not None:
            facts = replace(facts, override=current.override)
        await self.store(old, facts)
        return facts

    async def _probe(self, domain: str) -> DomainFacts:
        old = await self.get_facts(domain)
        now = self.clock()
        base = old if old is not None else DomainFacts(domain, first_seen=now)
        facts = await self.prober.probe_domain(base, now)
        current = await self.get_facts(domain)
        if current is not None:
            facts = replace(facts, sts=current.sts, sts_checked_at=current.sts_checked_at,
                            sts_failed_at=current.sts_failed_at, dane=current.dane,
                            override=current.override)
        await self.store(old, facts)
        seen = sum(1 for result in facts.probes if result.starttls)
        log.info("domain %s: probed %d MX host(s), %d offered STARTTLS",
                 domain, len(facts.probes), seen)
        return facts

    # Background work.

    def spawn(self, coroutine: Awaitable[object]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[object]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, (TemporaryFailure, CacheError)):
            log.warning("background domain work failed, will retry later: %s", error)
        elif error is not None:
            log.error("background domain work failed", exc_info=error)

    def schedule_probe(self, domain: str, delay: float) -> None:
        async def delayed() -> None:
            await asyncio.sleep(delay)
            await self._single("probe", domain, self._probe)

        self.spawn(delayed())

    def probe_due(self, facts: DomainFacts, now: float) -> bool:
        if facts.last_probe_at is None:
            first = facts.first_seen if facts.first_seen is not None else 0.0
            return now - first >= self.config.probe_new_domain_delay
        return now - facts.last_probe_at >= self.config.probe_interval

    async def run_due_work(self) -> int:
        """Start refreshes and probes that are due; return how many were started."""
        now = self.clock()
        started = 0
        domains = await self._run_cache(self.cache.domains)
        assert isinstance(domains, list)
        for domain in domains:
            facts = await self.get_facts(domain)
            if facts is None:
                continue
            if self._refresh_due(facts, now) and ("refresh", domain) not in self._inflight:
                self.spawn(self._single("refresh", domain, self._refresh))
                started += 1
            if self.probe_due(facts, now) and ("probe", domain) not in self._inflight:
                self.spawn(self._single("probe", domain, self._probe))
                started += 1
        return started

    async def run_scheduler(self) -> None:
        """Loop forever: every ``scheduler_interval`` start the due refreshes and probes.

        NOTE: each pass reads every domain in the cache; fine for thousands of
        domains, not measured beyond that.
        """
        while True:
            try:
                await self.run_due_work()
            except CacheError as exc:
                log.error("scheduler: cannot read the facts cache: %s", exc)
            await asyncio.sleep(self.config.scheduler_interval)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.fetcher.close()
