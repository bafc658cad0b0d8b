"""Domain facts cache: a base class and the SQLite (WAL) and Redis backends.

The interface is synchronous so that the milter's worker threads can read it
directly. SQLite calls take microseconds on a local file, so ``postveil-policyd``
calls them from its event loop; it runs Redis calls in a worker thread.

Every backend raises :class:`CacheError` (a :class:`TemporaryFailure`) when the
store cannot be read or written; callers answer with a temporary failure.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

from postveil.config.policyd import PolicydSection
from postveil.errors import TemporaryFailure
from postveil.tlsfacts.facts import DomainFacts, RequirementEvent

log = logging.getLogger(__name__)

EVENTS_KEPT = 100_000
"""Redis keeps this many requirement events; SQLite keeps all of them."""


class CacheError(TemporaryFailure):
    """The domain facts cache could not be read or written."""


class FactsCache(ABC):
    """Store of :class:`DomainFacts` keyed by lower-case domain name."""

    local: bool = False
    """True when calls are fast enough to run on an event loop thread."""

    @abstractmethod
    def get(self, domain: str) -> DomainFacts | None:
        """Return the stored facts, or None when the domain is unknown.

        ``tls_held_until`` is filled in from the domain's TLS hold. A domain with a hold
        and no other facts (purged, say) comes back as facts holding only the hold. A
        damaged record is logged and reported as unknown, its hold kept.
        """

    @abstractmethod
    def hold_tls(self, domain: str, until: float) -> None:
        """Keep the domain's TLS required until ``until`` (epoch seconds).

        Holds only grow: an earlier ``until`` than the stored one changes nothing.
        ``put`` and ``delete`` do not touch holds. So neither a refresh that read the
        facts before the hold was written nor ``postveil domain purge`` loses it.
        """

    @abstractmethod
    def release_tls_hold(self, domain: str) -> bool:
        """End the domain's TLS hold now (``postveil domain release``); return whether
        there was one. The only way a hold shrinks."""

    @abstractmethod
    def put(self, facts: DomainFacts) -> None: ...

    @abstractmethod
    def delete(self, domain: str) -> bool:
        """Remove a domain; return whether it was stored."""

    @abstractmethod
    def domains(self) -> list[str]:
        """Return every stored domain, those with only a TLS hold among them, sorted."""

    @abstractmethod
    def add_event(self, event: RequirementEvent) -> None: ...

    @abstractmethod
    def events(self, domain: str | None = None, limit: int = 100) -> list[RequirementEvent]:
        """Return the newest events first, optionally for one domain."""

    def all_facts(self) -> Iterator[DomainFacts]:
        for domain in self.domains():
            facts = self.get(domain)
            if facts is not None:
                yield facts

    def close(self) -> None:  # noqa: B027  (a cache without connections keeps this)
        """Release connections; the object may not be used afterwards."""


def _parse_hold(domain: str, raw: object) -> float | None:
    """Return the stored end of a TLS hold; a damaged value reads as a hold without end.

    A damaged hold must never read as "no hold", or mail already accepted on the
    condition of TLS could leave in plaintext. The next ``hold_tls`` replaces it.
    """
    if raw is None:
        return None
    try:
        until = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        until = math.nan
    if math.isnan(until):
        log.error("domain %s: damaged TLS hold in the cache; treating it as held", domain)
        return math.inf
    return until


def _decode(domain: str, raw: str | bytes | None, held_until: float | None = None) -> DomainFacts | None:
    facts = None
    if raw is not None:
        try:
            facts = DomainFacts.from_json(raw)
        except ValueError as exc:
            log.error("domain %s: ignoring damaged cache record: %s", domain, exc)
    if held_until is None:
        return facts
    if facts is None:
        return DomainFacts(domain, tls_held_until=held_until)
    return replace(facts, tls_held_until=held_until)


_MAX_IDLE_CONNECTIONS = 16
"""Idle SQLite connections kept open; more than this many at once are closed after use."""


class SqliteFactsCache(FactsCache):
    """One SQLite file in WAL mode; readers in other processes never block the writer."""

    local = True

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS domains ("
        " domain TEXT PRIMARY KEY, facts TEXT NOT NULL, updated_at REAL NOT NULL)",
        "CREATE TABLE IF NOT EXISTS events ("
        " at REAL NOT NULL, domain TEXT NOT NULL, old_level TEXT, new_level TEXT,"
        " rule TEXT NOT NULL, reason TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS events_domain ON events (domain, at)",
        "CREATE TABLE IF NOT EXISTS tls_holds (domain TEXT PRIMARY KEY, until REAL NOT NULL)",
    )

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self._busy_timeout = busy_timeout
        # Connections not in use, each with the identity of the file it opened. A call
        # takes one (or opens one), uses it alone and puts it back, so no two threads
        # use a connection at once and none waits for another beyond the list's lock.
        # Thread-local connections would leak, because pymilter gives every SMTP
        # connection a new thread state.
        self._idle: list[tuple[sqlite3.Connection, tuple[int, int] | None]] = []
        self._lock = threading.Lock()
        self._closed = False
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connection():
            pass

    def _file_identity(self) -> tuple[int, int] | None:
        """Return the cache file's (device, inode), or None when it does not exist."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot open cache {self.path}: {exc}") from exc
        return status.st_dev, status.st_ino

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """Lend a connection to the calling thread for the duration of the block.

        A connection stays bound to the file it opened. When the file at ``path`` was
        deleted or replaced (a restored backup, say), idle connections to the old file
        are closed, so that a TLS hold is never written where the other daemon no
        longer reads. Costs one ``stat`` a call.
        """
        identity = self._file_identity()
        stale = []
        connection = None
        with self._lock:
            while self._idle:
                candidate, opened = self._idle.pop()
                if opened == identity:
                    connection = candidate
                    break
                stale.append(candidate)
        for old in stale:
            old.close()
        if connection is None:
            connection = self._open()
            identity = self._file_identity()
        try:
            yield connection
        finally:
            with self._lock:
                keep = not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS
                if keep:
                    self._idle.append((connection, identity))
            if not keep:
                connection.close()

    def _open(self) -> sqlite3.Connection:
        """Open the file (creating it and its tables when missing) in WAL mode."""
        try:
            connection = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None,
                check_same_thread=False,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            with connection:
                for statement in self._SCHEMA:
                    connection.execute(statement)
        except sqlite3.Error as exc:
            raise CacheError(f"cannot open cache {self.path}: {exc}") from exc
        return connection

    def get(self, domain: str) -> DomainFacts | None:
        try:
            with self._connection() as connection:
                facts, held_until = connection.execute(
                    "SELECT (SELECT facts FROM domains WHERE domain = ?1),"
                    " (SELECT until FROM tls_holds WHERE domain = ?1)",
                    (domain,),
                ).fetchone()
        except sqlite3.Error as exc:
            raise CacheError(f"cannot read cache {self.path}: {exc}") from exc
        return _decode(domain, facts, _parse_hold(domain, held_until))

    def hold_tls(self, domain: str, until: float) -> None:
        # A stored value that is not a finite number (damaged) is replaced, as in Redis.
        try:
            with self._connection() as connection:
                connection.execute(
                    "INSERT INTO tls_holds (domain, until) VALUES (?, ?)"
                    " ON CONFLICT (domain) DO UPDATE SET until = CASE"
                    " WHEN typeof(until) IN ('real', 'integer') AND abs(until) < 1e308"
                    " THEN max(until, excluded.until)"
                    " ELSE excluded.until END",
                    (domain, until),
                )
        except sqlite3.Error as exc:
            raise CacheError(f"cannot write cache {self.path}: {exc}") from exc

    def put(self, facts: DomainFacts) -> None:
        try:
            with self._connection() as connection:
                connection.execute(
                    "INSERT INTO domains (domain, facts, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (domain) DO UPDATE SET facts = excluded.facts,"
                    " updated_at = excluded.updated_at",
                    (facts.domain, facts.to_json(), time.time()),
                )
        except sqlite3.Error as exc:
            raise CacheError(f"cannot write cache {self.path}: {exc}") from exc

    def delete(self, domain: str) -> bool:
        try:
            with self._connection() as connection:
                cursor = connection.execute("DELETE FROM domains WHERE domain = ?", (domain,))
        except sqlite3.Error as exc:
            raise CacheError(f"cannot write cache {self.path}: {exc}") from exc
        return cursor.rowcount > 0

    def release_tls_hold(self, domain: str) -> bool:
        try:
            with self._connection() as connection:
                cursor = connection.execute("DELETE FROM tls_holds WHERE domain = ?", (domain,))
        except sqlite3.Error as exc:
            raise CacheError(f"cannot write cache {self.path}: {exc}") from exc
        return cursor.rowcount > 0

    def domains(self) -> list[str]:
        try:
            with self._connection() as connection:
                rows = connection.execute(
                    "SELECT domain FROM domains UNION SELECT domain FROM tls_holds ORDER BY domain"
                )
                return [row[0] for row in rows]
        except sqlite3.Error as exc:
            raise CacheError(f"cannot read cache {self.path}: {exc}") from exc

    def add_event(self, event: RequirementEvent) -> None:
        try:
            with self._connection() as connection:
                connection.execute(
                    "INSERT INTO events (at, domain, old_level, new_level, rule, reason)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (event.at, event.domain, event.old_level, event.new_level, event.rule,
                     event.reason),
                )
        except sqlite3.Error as exc:
            raise CacheError(f"cannot write cache {self.path}: {exc}") from exc

    def events(self, domain: str | None = None, limit: int = 100) -> list[RequirementEvent]:
        query = "SELECT domain, old_level, new_level, rule, reason, at FROM events"
        parameters: tuple[object, ...] = ()
        if domain is not None:
            query += " WHERE domain = ?"
            parameters = (domain,)
        query += " ORDER BY at DESC, rowid DESC LIMIT ?"
        try:
            with self._connection() as connection:
                rows = connection.execute(query, parameters + (limit,)).fetchall()
        except sqlite3.Error as exc:
            raise CacheError(f"cannot read cache {self.path}: {exc}") from exc
        return [RequirementEvent(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()


class RedisFactsCache(FactsCache):
    """A Redis hash shared by several MTAs, plus a capped list of events."""

    def __init__(self, url: str, prefix: str = "postveil:tlsfacts:", *, timeout: float = 5.0) -> None:
        import redis

        self._redis_error = redis.RedisError
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._domains_key = prefix + "domains"
        self._events_key = prefix + "events"
        self._holds_key = prefix + "tls_holds"

    def get(self, domain: str) -> DomainFacts | None:
        try:
            pipeline = self._client.pipeline(transaction=False)
            pipeline.hget(self._domains_key, domain)
            pipeline.hget(self._holds_key, domain)
            raw, held = pipeline.execute()
        except self._redis_error as exc:
            raise CacheError(f"cannot read Redis cache: {exc}") from exc
        return _decode(domain, raw, _parse_hold(domain, held))

    def hold_tls(self, domain: str, until: float) -> None:
        # Compare and raise in one step on the server, so two milters cannot lower it.
        # Lua's tonumber reads "inf" and "nan", which a hold never is: replace them too.
        script = (
            "local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))\n"
            "if old == nil or old ~= old or old == math.huge or old < tonumber(ARGV[2]) then\n"
            "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
            "end\n"
            "return 0"
        )
        try:
            self._client.eval(script, 1, self._holds_key, domain, repr(until))
        except self._redis_error as exc:
            raise CacheError(f"cannot write Redis cache: {exc}") from exc

    def put(self, facts: DomainFacts) -> None:
        try:
            self._client.hset(self._domains_key, facts.domain, facts.to_json())
        except self._redis_error as exc:
            raise CacheError(f"cannot write Redis cache: {exc}") from exc

    def delete(self, domain: str) -> bool:
        try:
            return bool(self._client.hdel(self._domains_key, domain))
        except self._redis_error as exc:
            raise CacheError(f"cannot write Redis cache: {exc}") from exc

    def release_tls_hold(self, domain: str) -> bool:
        try:
            return bool(self._client.hdel(self._holds_key, domain))
        except self._redis_error as exc:
            raise CacheError(f"cannot write Redis cache: {exc}") from exc

    def domains(self) -> list[str]:
        try:
            keys = set(self._client.hkeys(self._domains_key))
            keys.update(self._client.hkeys(self._holds_key))
        except self._redis_error as exc:
            raise CacheError(f"cannot read Redis cache: {exc}") from exc
        return sorted(key.decode() for key in keys)

    def add_event(self, event: RequirementEvent) -> None:
        try:
            pipeline = self._client.pipeline()
            pipeline.lpush(self._events_key, json.dumps(asdict(event)))
            pipeline.ltrim(self._events_key, 0, EVENTS_KEPT - 1)
            pipeline.execute()
        except self._redis_error as exc:
            raise CacheError(f"cannot write Redis cache: {exc}") from exc

    def events(self, domain: str | None = None, limit: int = 100) -> list[RequirementEvent]:
        try:
            raw_events = self._client.lrange(self._events_key, 0, -1)
        except self._redis_error as exc:
            raise CacheError(f"cannot read Redis cache: {exc}") from exc
        found = []
        for raw in raw_events:
            event = RequirementEvent(**json.loads(raw))
            if domain is None or event.domain == domain:
                found.append(event)
                if len(found) >= limit:
                    break
        return found

    def close(self) -> None:
        self._client.close()


def open_cache(config: PolicydSection) -> FactsCache:
    """Open the backend the ``policyd`` section names; raises CacheError when it cannot."""
    if config.cache_backend == "redis":
        return RedisFactsCache(config.redis_url, config.redis_prefix)
    return SqliteFactsCache(config.cache_path)
