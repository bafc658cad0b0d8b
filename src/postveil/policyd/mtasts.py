"""MTA-STS (RFC 8461) TXT record and policy file parsing, and the caching rules.

Everything here is pure: network access lives in :mod:`postveil.policyd.mtasts_fetch`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from postveil.config.policyd import PolicydSection
from postveil.errors import PostveilError
from postveil.tlsfacts.facts import STS_MODES, DomainFacts, StsPolicy

MAX_AGE_LIMIT = 31_557_600
"""Largest ``max_age`` RFC 8461 section 3.2 allows (about one year), in seconds."""

_WSP = " \t"
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
_EXT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_EXT_VALUE_RE = re.compile(r"^[\x21-\x3a\x3c\x3e-\x7e]+$")
_VERSION_FIELD_RE = re.compile(r"^v[ \t]*=[ \t]*(.*)$", re.DOTALL)
_POLICY_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_MAX_AGE_RE = re.compile(r"^[0-9]{1,10}$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class StsParseError(PostveilError):
    """A TXT record or policy file does not follow RFC 8461."""


@dataclass(frozen=True, slots=True)
class StsTxt:
    policy_id: str


def parse_txt_records(records: list[bytes]) -> StsTxt | None:
    """Pick the MTA-STS record among the TXT records of ``_mta-sts.<domain>``.

    ``records`` holds one entry per TXT record with its strings already joined.
    Records that do not start with the ``v=STSv1`` field are discarded. Returns None
    when no record remains; raises StsParseError when more than one remains or the
    one left is invalid. Both mean the domain has no available policy (section 3.1).
    """
    candidates: list[str] = []
    for raw in records:
        text = raw.decode("ascii", errors="replace")
        first_field = text.split(";", 1)[0].strip(_WSP)
        match = _VERSION_FIELD_RE.match(first_field)
        if match is not None and match.group(1) == "STSv1":
            candidates.append(text)
    if not candidates:
        return None
    if len(candidates) > 1:
        raise StsParseError(f"{len(candidates)} v=STSv1 TXT records; exactly one is allowed")
    return _parse_txt_record(candidates[0])


def _parse_txt_record(text: str) -> StsTxt:
    fields = text.split(";")
    if fields and fields[-1].strip(_WSP) == "":
        fields.pop()  # a trailing field delimiter is allowed
    policy_id: str | None = None
    for position, raw_field in enumerate(fields[1:], start=2):
        field = raw_field.strip(_WSP)
        name, equals, value = field.partition("=")
        name = name.rstrip(_WSP)
        value = value.lstrip(_WSP)
        if not equals:
            raise StsParseError(f"TXT field {position} is not name=value")
        if name == "id":
            if policy_id is not None:
                raise StsParseError("TXT record has more than one id field")
            if not _ID_RE.match(value):
                raise StsParseError(
                    f"invalid id of {len(value)} characters: expected 1-32 letters or digits"
                )
            policy_id = value
        elif not _EXT_NAME_RE.match(name) or not _EXT_VALUE_RE.match(value):
            raise StsParseError(f"invalid extension field {position} in TXT record")
    if policy_id is None:
        raise StsParseError("TXT record has no id field")
    return StsTxt(policy_id)


@dataclass(frozen=True, slots=True)
class ParsedPolicy:
    mode: str
    mx: tuple[str, ...]
    max_age: int


def parse_policy(body: bytes) -> ParsedPolicy:
    """Parse an MTA-STS policy file (section 3.2); raises StsParseError when invalid.

    Lines end in LF or CRLF. For every key except ``mx`` the first occurrence wins;
    unknown keys are ignored as extensions.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StsParseError(f"policy is not valid UTF-8 at byte {exc.start}") from exc
    values: dict[str, str] = {}
    mx: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip(_WSP):
            continue
        key, colon, value = line.partition(":")
        key = key.strip(_WSP)
        value = value.strip(_WSP)
        if not colon or not _POLICY_KEY_RE.match(key):
            raise StsParseError(f"policy line {number} is not 'key: value'")
        if key == "mx":
            mx.append(_check_mx_pattern(value, number))
        else:
            values.setdefault(key, value)

    if values.get("version") != "STSv1":
        raise StsParseError("policy version is missing or not STSv1")
    mode = values.get("mode")
    if mode is None:
        raise StsParseError("policy has no mode")
    if mode not in STS_MODES:
        raise StsParseError(f"unknown policy mode {mode[:20]!r}: expected enforce, testing or none")
    max_age_text = values.get("max_age")
    if max_age_text is None:
        raise StsParseError("policy has no max_age")
    if not _MAX_AGE_RE.match(max_age_text):
        raise StsParseError("policy max_age is not a number of seconds")
    max_age = int(max_age_text)
    if max_age > MAX_AGE_LIMIT:
        raise StsParseError(f"policy max_age {max_age} exceeds the limit of {MAX_AGE_LIMIT}")
    if not mx and mode != "none":
        raise StsParseError(f"policy in mode {mode} has no mx line")
    return ParsedPolicy(mode, tuple(dict.fromkeys(mx)), max_age)


def _check_mx_pattern(value: str, line_number: int) -> str:
    pattern = value.lower().rstrip(".")
    host = pattern.removeprefix("*.")
    if _is_ip_literal(host):
        raise StsParseError(f"policy line {line_number}: mx is an IP literal, not a host name")
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        raise StsParseError(f"policy line {line_number}: mx is not a valid host name pattern")
    return pattern


def _is_ip_literal(text: str) -> bool:
    candidate = text.strip("[]")
    if candidate.lower().startswith("ipv6:"):
        return True
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return all(part.isdigit() for part in text.split("."))
    return True


def sts_refresh_due(facts: DomainFacts | None, config: PolicydSection, now: float) -> bool:
    """Decide whether the domain's TXT record (and maybe its policy) should be fetched now.

    A domain whose last attempt failed waits ``failed_retry_interval`` (at least five
    minutes, RFC 8461 section 10.3). A cached policy is refreshed ahead of its expiry.
    """
    if facts is None or facts.sts_checked_at is None and facts.sts_failed_at is None:
        return True
    last_ok = facts.sts_checked_at or 0.0
    if facts.sts_failed_at is not None and facts.sts_failed_at >= last_ok:
        return now - facts.sts_failed_at >= config.failed_retry_interval
    if facts.sts is None or not facts.sts.is_valid(now):
        return now - last_ok >= config.no_policy_recheck
    if now >= facts.sts.expires_at - config.refresh_before_expiry:
        return True
    return now - last_ok >= config.recheck_interval


def policy_fetch_needed(
    cached: StsPolicy | None, txt: StsTxt, config: PolicydSection, now: float
) -> bool:
    """Fetch when the id changed, nothing valid is cached, or the cached policy nears expiry."""
    if cached is None or not cached.is_valid(now):
        return True
    if cached.policy_id != txt.policy_id:
        return True
    return now >= cached.expires_at - config.refresh_before_expiry


def keep_cached_policy(cached: StsPolicy | None, now: float) -> StsPolicy | None:
    """Return the cached policy while it is unexpired (section 5.1), else None."""
    if cached is not None and cached.is_valid(now):
        return cached
    return None
