"""RFC 8461 caching rules that need no network: when to look up and when to fetch again."""

from __future__ import annotations

from dataclasses import replace

import pytest

from postveil.config.policyd import PolicydSection
from postveil.policyd.mtasts import StsTxt, keep_cached_policy, policy_fetch_needed, sts_refresh_due
from postveil.tlsfacts.facts import DomainFacts, StsPolicy

NOW = 1_800_000_000.0
CONFIG = PolicydSection()  # recheck 1h, no-policy recheck 1h, refresh 1d before expiry, retry 5m
POLICY = StsPolicy("id1", "enforce", ("mx.example.org",), 7 * 86400, NOW - 600)
NEAR_EXPIRY = replace(POLICY, fetched_at=NOW - 7 * 86400 + 3600)
EXPIRED = replace(POLICY, fetched_at=NOW - 7 * 86400 - 1)
BASE = DomainFacts("example.org")

REFRESH_CASES = [
    ("never looked up", BASE, True),
    ("no policy checked recently", replace(BASE, sts_checked_at=NOW - 60), False),
    ("no policy checked long ago", replace(BASE, sts_checked_at=NOW - 3601), True),
    ("policy checked recently", replace(BASE, sts=POLICY, sts_checked_at=NOW - 60), False),
    ("policy recheck due", replace(BASE, sts=POLICY, sts_checked_at=NOW - 3601), True),
    ("policy near expiry", replace(BASE, sts=NEAR_EXPIRY, sts_checked_at=NOW - 60), True),
    ("failure four minutes ago", replace(BASE, sts=POLICY, sts_checked_at=NOW - 7200,
                                         sts_failed_at=NOW - 240), False),
    ("failure six minutes ago", replace(BASE, sts=POLICY, sts_checked_at=NOW - 7200,
                                        sts_failed_at=NOW - 360), True),
    ("failure without cache", replace(BASE, sts_failed_at=NOW - 240), False),
    ("old failure then success", replace(BASE, sts=POLICY, sts_checked_at=NOW - 60,
                                         sts_failed_at=NOW - 120), False),
]


@pytest.mark.parametrize(("facts", "due"), [c[1:] for c in REFRESH_CASES],
                         ids=[c[0] for c in REFRESH_CASES])
def test_refresh_due_table(facts: DomainFacts, due: bool) -> None:
    assert sts_refresh_due(facts, CONFIG, NOW) is due


FETCH_CASES = [
    ("nothing cached", None, "id1", True),
    ("same id", POLICY, "id1", False),
    ("new id", POLICY, "id2", True),
    ("same id near expiry", NEAR_EXPIRY, "id1", True),
    ("same id expired", EXPIRED, "id1", True),
]


@pytest.mark.parametrize(("cached", "txt_id", "needed"), [c[1:] for c in FETCH_CASES],
                         ids=[c[0] for c in FETCH_CASES])
def test_fetch_needed_table(cached: StsPolicy | None, txt_id: str, needed: bool) -> None:
    assert policy_fetch_needed(cached, StsTxt(txt_id), CONFIG, NOW) is needed


def test_cached_policy_kept_until_expiry() -> None:
    assert keep_cached_policy(POLICY, NOW) == POLICY
    assert keep_cached_policy(EXPIRED, NOW) is None
    assert keep_cached_policy(None, NOW) is None


def test_retry_interval_below_five_minutes_rejected() -> None:
    with pytest.raises(ValueError, match="five minutes"):
        PolicydSection(failed_retry_interval="4m")
