"""``postveil domain`` around a TLS hold: warnings, the audit trail and ``release``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from postveil.tlsfacts import DomainFacts, ProbeResult
from postveil.tlsfacts.cache import SqliteFactsCache
from tests.cli.test_domain_reason import domain

NO_STARTTLS = ProbeResult("mx.example.org", 1000.0, False, error="no-starttls")


def records(config: Path, kind: str) -> list[dict[str, object]]:
    lines = (config.parent / "audit" / "audit.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["kind"] == kind]


def test_set_warns_when_probes_found_no_starttls(config: Path) -> None:
    cache = SqliteFactsCache(config.parent / "facts.sqlite3")
    cache.put(DomainFacts("example.org", probes=(NO_STARTTLS,), last_probe_at=1000.0))
    cache.close()

    result = domain(config, "set", "example.org", "--tls", "encrypt")

    assert result.returncode == 0, result.stderr
    assert "found no STARTTLS on any MX (mx.example.org)" in result.stderr


def test_unset_under_hold_says_so_in_the_trail(config: Path) -> None:
    assert domain(config, "set", "example.org", "--tls", "encrypt").returncode == 0
    cache = SqliteFactsCache(config.parent / "facts.sqlite3")
    cache.hold_tls("example.org", time.time() + 3600)
    cache.close()

    result = domain(config, "unset", "example.org")

    assert result.returncode == 0, result.stderr
    assert "TLS stays required (at least encrypt) for all mail to it" in result.stdout
    change = records(config, "tls_requirement")[-1]
    assert change["new"] == "none"
    assert "TLS stays required until" in str(change["reason"])


def test_release_without_queue_check_needs_force(config: Path, tmp_path: Path) -> None:
    cache = SqliteFactsCache(config.parent / "facts.sqlite3")
    cache.hold_tls("example.org", time.time() + 3600)
    cache.close()
    missing = tmp_path / "no-postfix-here"

    refused = domain(config, "release", "example.org", "--postfix-config", str(missing))
    forced = domain(config, "release", "example.org", "--postfix-config", str(missing), "--force")
    again = domain(config, "release", "example.org")

    assert refused.returncode == 1
    assert "cannot check Postfix's queue" in refused.stderr
    assert forced.returncode == 0, forced.stderr
    assert "no TLS hold to release" in again.stdout
    actions = [record["action"] for record in records(config, "admin_override")]
    assert actions == ["release-tls-hold"]


def test_unset_without_override_records_nothing(config: Path) -> None:
    result = domain(config, "unset", "example.org")

    assert result.returncode == 0, result.stderr
    assert "no administrator override to remove" in result.stdout
    assert not (config.parent / "audit" / "audit.jsonl").exists()
