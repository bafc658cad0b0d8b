"""The seal on portal copies: made by the milter's renderer, checked by the intake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from postveil.config import Config
from postveil.crypto.mime import RawMessage
from postveil.crypto.pipeline import build_context
from postveil.portal.seal import SEAL_HEADER, PortalSeal
from postveil.portal.store import PortalKeyError, generate_master_key

NOW = 1_800_000_000
WEEK = 7 * 86400.0
RECIPIENTS = ["ana@dest.test", "bo@other.test"]


@pytest.fixture
def seal(tmp_path: Path) -> PortalSeal:
    generate_master_key(tmp_path / "seal.key", mode=0o640)
    return PortalSeal.load(tmp_path / "seal.key")


def test_good_seal(seal: PortalSeal) -> None:
    value = seal.make(RECIPIENTS, now=NOW)
    assert seal.check(value, RECIPIENTS, max_age=WEEK, now=NOW + 3600) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda v, r: (None, r), "no seal header"),
        (lambda v, r: ("v1 t=1 m=zz", r), "malformed"),
        (lambda v, r: (v, [*r, "eve@attacker.test"]), "does not match"),
        (lambda v, r: (v, list(reversed(r))), "does not match"),
        (lambda v, r: (v, ["eve@attacker.test"]), "does not match"),
        (lambda v, r: (v.replace(f"t={NOW}", f"t={NOW + 1}"), r), "does not match"),
    ],
)
def test_bad_seals(seal: PortalSeal, change, reason: str) -> None:
    value, recipients = change(seal.make(RECIPIENTS, now=NOW), RECIPIENTS)
    assert reason in seal.check(value, recipients, max_age=WEEK, now=NOW)


def test_old_and_future_seals(seal: PortalSeal) -> None:
    value = seal.make(RECIPIENTS, now=NOW)
    assert "older" in seal.check(value, RECIPIENTS, max_age=WEEK, now=NOW + WEEK + 1)
    assert "future" in seal.check(value, RECIPIENTS, max_age=WEEK, now=NOW - 3600)


def test_other_key_does_not_match(seal: PortalSeal, tmp_path: Path) -> None:
    generate_master_key(tmp_path / "other.key", mode=0o640)
    other = PortalSeal.load(tmp_path / "other.key")
    assert "does not match" in other.check(
        seal.make(RECIPIENTS, now=NOW), RECIPIENTS, max_age=WEEK, now=NOW
    )


def test_seal_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    generate_master_key(tmp_path / "seal.key", mode=0o640)
    os.chmod(tmp_path / "seal.key", 0o644)
    with pytest.raises(PortalKeyError, match="chmod 640"):
        PortalSeal.load(tmp_path / "seal.key")
    with pytest.raises(PortalKeyError, match="portal seal key"):
        PortalSeal.load(tmp_path / "missing.key")


def portal_config(tmp_path: Path, seal_key: str | None) -> Config:
    return Config.model_validate(
        {
            "portal": {"intake_address": "intake@portal.test", "seal_key_file": seal_key},
            "smime": {"certificate_dir": str(tmp_path)},
            "pgp": {"gnupg_home": str(tmp_path)},
        }
    )


def render_portal_copy(config: Config) -> RawMessage:
    from postveil.crypto.pipeline import process_message

    raw = (
        b"From: gp@clinic.test\r\nTo: ana@dest.test, bo@other.test\r\nSubject: [portal] notes\r\n"
        + SEAL_HEADER.encode()
        + b": v1 t=1 m="
        + b"0" * 64
        + b"\r\nX-Postveil-Portal-Recipient: eve@attacker.test\r\n\r\nbody\r\n"
    )
    outcome = process_message(
        raw,
        queue_id="Q1",
        sender="gp@clinic.test",
        recipients=RECIPIENTS,
        verdict=None,
        tls={},
        context=build_context(config),
    )
    (version,) = outcome.versions
    assert version.envelope_recipients == ("intake@portal.test",)
    return RawMessage.parse(version.raw)


def test_milter_seals_the_portal_copy(tmp_path: Path) -> None:
    generate_master_key(tmp_path / "seal.key", mode=0o640)
    copy = render_portal_copy(portal_config(tmp_path, str(tmp_path / "seal.key")))
    recipients = copy.values("X-Postveil-Portal-Recipient")
    assert recipients == RECIPIENTS
    (seal_value,) = copy.values(SEAL_HEADER)
    seal = PortalSeal.load(tmp_path / "seal.key")
    assert seal.check(seal_value, recipients, max_age=WEEK) is None


def test_sender_seal_removed_without_key(tmp_path: Path) -> None:
    copy = render_portal_copy(portal_config(tmp_path, None))
    assert copy.get_all(SEAL_HEADER) == []
    recipients = copy.values("X-Postveil-Portal-Recipient")
    assert recipients == RECIPIENTS


def test_unreadable_seal_key_stops_the_milter_context(tmp_path: Path) -> None:
    with pytest.raises(PortalKeyError, match="postveil portal init"):
        build_context(portal_config(tmp_path, str(tmp_path / "missing.key")))
