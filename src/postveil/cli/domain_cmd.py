"""``postveil domain``: inspect and steer the per-domain TLS facts that postveil-policyd uses."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from postveil.audit import AdminOverride, AuditLog, TlsRequirementChange
from postveil.cli.admin_audit import admin_name
from postveil.cli.common import add_config_option, load_cli_config
from postveil.config import Config
from postveil.errors import PostveilError
from postveil.policyd.daemon import detect_postfix_version
from postveil.policyd.dane import lookup_dane
from postveil.policyd.dns import DnsClient
from postveil.policyd.domains import audit_source
from postveil.policyd.mtasts import StsParseError, parse_txt_records
from postveil.policyd.mtasts_fetch import PolicyFetcher, describe_policy, refresh_sts
from postveil.policyd.probe import Prober
from postveil.policyd.socketmap import domain_from_key
from postveil.tlsfacts.cache import FactsCache, open_cache
from postveil.tlsfacts.facts import DomainFacts, RequirementEvent
from postveil.tlsfacts.names import ascii_domain
from postveil.tlsfacts.requirement import (
    OVERRIDE_LEVELS,
    TLS_REQUIRED_LEVELS,
    Requirement,
    enforced_requirement,
    record_requirement,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "domain",
        help="inspect and override per-domain TLS policy",
        description="Inspect the TLS facts postveil-policyd keeps per recipient domain, "
        "run a live check, or set an administrator override.",
    )
    add_config_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    check = actions.add_parser("check", help="look the domain up live (DNS, MTA-STS, DANE, probe)")
    check.add_argument("domain")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--no-probe", action="store_true", help="skip the STARTTLS probe")

    show = actions.add_parser("show", help="print the cached facts and requirement of a domain")
    show.add_argument("domain")
    show.add_argument("--json", action="store_true", help="print one JSON object")

    listing = actions.add_parser("list", help="list cached domains with their TLS requirement")
    listing.add_argument("--json", action="store_true", help="print one JSON array")

    purge = actions.add_parser("purge", help="forget everything cached about a domain")
    purge.add_argument("domain")

    setter = actions.add_parser("set", help="override the TLS level of a domain")
    setter.add_argument("domain")
    setter.add_argument("--tls", required=True, choices=OVERRIDE_LEVELS, metavar="LEVEL",
                        help="Postfix TLS level: " + ", ".join(OVERRIDE_LEVELS))

    unset = actions.add_parser("unset", help="remove the administrator override of a domain")
    unset.add_argument("domain")

    release = actions.add_parser(
        "release",
        help="end a domain's TLS hold before its time, once no mail for it is queued",
        description="End the TLS hold that postveil-milter set when it routed mail for the "
        "domain by TLS. Refused while Postfix's queue still holds mail for the domain, "
        "because that mail was accepted on the condition of TLS.",
    )
    release.add_argument("domain")
    release.add_argument(
        "--force", action="store_true",
        help="release even when mail for the domain is queued or the queue cannot be read",
    )
    release.add_argument(
        "--postfix-config", metavar="DIR", default=None,
        help="Postfix configuration directory of the instance whose queue to check "
        "(default: Postfix's own default)",
    )

    for action in (purge, setter, unset, release):
        action.add_argument(
            "--reason", metavar="TEXT", default="",
            help="reason for the change, stored in the reason field of the audit record "
            "(one line, at most 998 characters)",
        )

    # Also accept --config after the action, as `postveil audit ACTION --config` does.
    for action in (check, show, listing, purge, setter, unset, release):
        add_config_option(action, default=argparse.SUPPRESS)

    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_cli_config(args.config)
    if config is None:
        return 1
    domain: str | None = None
    if getattr(args, "domain", None) is not None:
        domain = domain_from_key(args.domain)
        if domain is None:
            print(f"invalid domain name {args.domain!r}", file=sys.stderr)
            return 2
    try:
        if args.action == "check":
            assert domain is not None
            return asyncio.run(_check(config, domain, args.json, not args.no_probe))
        cache = open_cache(config.policyd)
        try:
            return _run_cached(args, config, cache, domain)
        finally:
            cache.close()
    except PostveilError as exc:
        print(f"postveil domain {args.action}: {exc}", file=sys.stderr)
        return 1


def _run_cached(args: argparse.Namespace, config: Config, cache: FactsCache, domain: str | None) -> int:
    now = time.time()
    if args.action == "list":
        rows = []
        for facts in cache.all_facts():
            requirement = enforced_requirement(facts, config.policyd, now=now)
            rows.append({"domain": facts.domain, "level": requirement.level, "rule": requirement.rule})
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                print(f"{row['domain']:40} {row['level'] or '-':10} {row['rule']}")
        return 0

    assert domain is not None
    if args.action == "show":
        facts = cache.get(domain)
        if facts is None:
            print(f"{domain}: not in the cache", file=sys.stderr)
            return 1
        _print_report(_report(config, facts, cache.events(domain, limit=20), now), args.json)
        return 0
    if args.action in ("purge", "set", "unset", "release"):
        audit = AuditLog(config.audit, program="postveil domain")
        try:
            return _change(args, config, cache, audit, domain, now)
        finally:
            audit.close()
    raise AssertionError(args.action)


def _change(
    args: argparse.Namespace, config: Config, cache: FactsCache, audit: AuditLog, domain: str,
    now: float,
) -> int:
    """Apply purge, set, unset or release; the admin action is in the audit trail before
    it takes effect."""
    old = cache.get(domain)
    if args.action == "release":
        return _release(args, cache, audit, domain, old, now)
    if args.action == "purge":
        if old is None:
            print(f"{domain}: not in the cache", file=sys.stderr)
            return 1
        audit.append(AdminOverride(admin_name(), domain, "purge-domain-facts", args.reason,
                                   command=f"postveil domain purge {domain}"))
        cache.delete(domain)
        print(f"{domain}: purged")
        _print_hold(old, now)
        return 0

    level = args.tls if args.action == "set" else None
    if level is None and (old is None or old.override is None):
        print(f"{domain}: no administrator override to remove")
        _print_hold(old, now)
        return 0
    command = f"postveil domain set {domain} --tls {level}" if level else f"postveil domain unset {domain}"
    audit.append(AdminOverride(admin_name(), domain, "set-tls" if level else "clear-tls",
                               args.reason, command=command))
    base = old if old is not None else DomainFacts(domain, first_seen=now)
    if level in TLS_REQUIRED_LEVELS:
        _warn_no_starttls(base)
    stored, event, previous_rule = record_requirement(
        old, replace(base, override=level), config.policyd, now=now
    )
    cache.put(stored)
    if event is not None:
        cache.add_event(event)
        reason = event.reason
        held = enforced_requirement(stored, config.policyd, now=now)
        if held.rule == "held":
            # The facts' own level dropped, but Postfix still gets a TLS policy. The
            # reason says so, or the trail would read as if TLS were no longer required.
            reason = f"{reason}; {held.reason}"
        audit.append(TlsRequirementChange(domain, event.old_level, event.new_level or "none",
                                          audit_source(event.rule, previous_rule), reason))
    after = enforced_requirement(stored, config.policyd, now=now)
    line = after.policy_line(detect_postfix_version(config.policyd))
    print(f"{domain}: {line or 'NOTFOUND'} ({after.rule}); postveil-policyd applies it "
          f"within {config.policyd.answer_cache_ttl:g}s")
    _print_hold(stored, now)
    return 0


def _print_hold(facts: DomainFacts | None, now: float) -> None:
    """Tell the admin when a TLS hold keeps the domain's TLS required whatever they set."""
    if facts is not None and facts.tls_held_until is not None and facts.tls_held_until > now:
        print(f"{facts.domain}: TLS stays required (at least encrypt) for all mail to it until "
              f"{_when(facts.tls_held_until)}, because postveil-milter accepted mail for it "
              "on the condition of TLS. Mail that cannot go over TLS waits in the queue. Once "
              f"no such mail is queued: postveil domain release {facts.domain}")


def _warn_no_starttls(facts: DomainFacts) -> None:
    """Warn before requiring TLS of a domain whose latest probes found no STARTTLS."""
    if facts.probes and not any(probe.starttls for probe in facts.probes):
        print(f"warning: the latest probe of {facts.domain} found no STARTTLS on any MX "
              f"({', '.join(probe.mx for probe in facts.probes)}); its mail will wait in "
              "the queue until TLS works or the message expires", file=sys.stderr)


def _release(
    args: argparse.Namespace, cache: FactsCache, audit: AuditLog, domain: str,
    old: DomainFacts | None, now: float,
) -> int:
    """End the domain's TLS hold, unless Postfix's queue still contains mail for it."""
    if old is None or old.tls_held_until is None or old.tls_held_until <= now:
        print(f"{domain}: no TLS hold to release")
        return 0
    queued, problem = _queued_for(domain, args.postfix_config)
    if not args.force:
        if problem is not None:
            print(f"postveil domain release: cannot check Postfix's queue ({problem}); "
                  "nothing was released. Use --force to release without the check.",
                  file=sys.stderr)
            return 1
        if queued:
            print(f"postveil domain release: {queued} queued message(s) have recipients at "
                  f"{domain}, accepted on the condition of TLS; nothing was released. Wait "
                  "for them to leave the queue, or remove them (postsuper -d), or use --force.",
                  file=sys.stderr)
            return 1
    command = f"postveil domain release {domain}" + (" --force" if args.force else "")
    audit.append(AdminOverride(admin_name(), domain, "release-tls-hold", args.reason,
                               command=command))
    cache.release_tls_hold(domain)
    print(f"{domain}: TLS hold released; postveil-policyd answers from the domain's own "
          "facts again")
    return 0


def _queued_for(domain: str, postfix_config: str | None) -> tuple[int, str | None]:
    """Count queued messages with a recipient at ``domain`` (``postqueue -j``).

    Returns (count, None), or (0, why) when the queue cannot be read.
    """
    command = ["postqueue", "-j"]
    if postfix_config:
        command[1:1] = ["-c", postfix_config]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 0, f"{' '.join(command)}: {exc}"
    if result.returncode != 0:
        return 0, f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()[:200]}"
    count = 0
    for line in result.stdout.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            addresses = [recipient["address"] for recipient in entry["recipients"]]
        except (ValueError, KeyError, TypeError):
            return 0, "postqueue -j printed a line that is not a queue entry"
        if any(ascii_domain(address.rpartition("@")[2]) == domain for address in addresses):
            count += 1
    return count, None


async def _check(config: Config, domain: str, as_json: bool, probe: bool) -> int:
    """Look the domain up from scratch and print the reply the daemon would send."""
    section = config.policyd
    now = time.time()
    dns = DnsClient(config.dns)
    fetcher = PolicyFetcher(section, dns)
    report: dict[str, Any] = {"domain": domain, "errors": []}
    facts = DomainFacts(domain, first_seen=now)
    try:
        try:
            mx = await dns.query(domain, "MX")
            report["mx"] = sorted(
                (record.preference, str(record.exchange).rstrip(".")) for record in mx.records
            )
            report["nxdomain"] = mx.nxdomain
        except PostveilError as exc:
            report["errors"].append(f"MX: {exc}")
        try:
            records = await dns.txt_strings(f"_mta-sts.{domain}")
            report["mta_sts_txt"] = [record.decode("ascii", "replace") for record in records or []]
            try:
                txt = parse_txt_records(records or [])
                report["mta_sts_id"] = txt.policy_id if txt else None
            except StsParseError as exc:
                report["errors"].append(f"MTA-STS TXT: {exc}")
            facts = await refresh_sts(facts, dns, fetcher, section, now)
            if facts.sts_error:
                report["errors"].append(f"MTA-STS policy fetch: {facts.sts_error}")
        except PostveilError as exc:
            report["errors"].append(f"MTA-STS: {exc}")
        try:
            facts = replace(facts, dane=await lookup_dane(dns, domain, section.smtp_port, now))
        except PostveilError as exc:
            report["errors"].append(f"DANE: {exc}")
        if probe:
            try:
                facts = await Prober(section, dns).probe_domain(facts, now)
            except PostveilError as exc:
                report["errors"].append(f"probe: {exc}")
    finally:
        await fetcher.close()
    report.update(_report(config, facts, [], now))
    _print_report(report, as_json)
    return 1 if report["errors"] else 0


def _report(config: Config, facts: DomainFacts, events: list[RequirementEvent], now: float) -> dict[str, Any]:
    requirement: Requirement = enforced_requirement(facts, config.policyd, now=now)
    line = requirement.policy_line(detect_postfix_version(config.policyd))
    return {
        "domain": facts.domain,
        "policy_line": line,
        "socketmap_reply": f"OK {line}" if line else "NOTFOUND",
        "level": requirement.level,
        "rule": requirement.rule,
        "reason": requirement.reason,
        "override": facts.override,
        "tls_held_until": facts.tls_held_until,
        "mta_sts": describe_policy(facts.sts),
        "mta_sts_error": facts.sts_error,
        "dane": asdict(facts.dane) if facts.dane else None,
        "probes": [asdict(result) for result in facts.probes],
        "tls_first_seen": facts.tls_first_seen,
        "tls_last_seen": facts.tls_last_seen,
        "failed_probes": facts.failed_probes,
        "events": [asdict(event) for event in events],
    }


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):
        return "no end (out of range)"


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return
    print(f"domain:        {report['domain']}")
    print(f"policy:        {report['socketmap_reply']}")
    print(f"rule:          {report['rule']} ({report['reason']})")
    if report.get("nxdomain"):
        print("MX:            none: the domain does not exist (NXDOMAIN)")
    elif "mx" in report:
        hosts = ", ".join(f"{host} ({preference})" for preference, host in report["mx"])
        print(f"MX:            {hosts or 'none: mail goes to the domain address itself (RFC 5321 implicit MX)'}")

    if report.get("override"):
        print(f"override:      {report['override']}")
    if report.get("tls_held_until"):
        print(f"TLS hold:      until {_when(report['tls_held_until'])} (mail accepted on the "
              "condition of TLS may still be queued)")
    sts = report["mta_sts"]
    if sts:
        print(f"MTA-STS:       mode {sts['mode']}, id {sts['id']}, mx {' '.join(sts['mx'])}, "
              f"expires {_when(sts['expires_at'])}")
    else:
        print("MTA-STS:       no policy" + (f" ({report['mta_sts_error']})" if report["mta_sts_error"] else ""))

    dane = report["dane"]
    if dane:
        if not dane["tlsa_present"]:
            state = "none"
        else:
            state = "usable" if dane["usable"] else "unusable"
            state += ", DNSSEC-validated" if dane["validated"] else ", not validated"
        print(f"DANE TLSA:     {state}")

    for probe in report["probes"]:
        if probe["starttls"]:
            cert = "valid certificate" if probe["cert_valid"] else "certificate not valid for the name"
            print(f"probe {probe['mx']}: STARTTLS {probe['tls_version']} {probe['cipher']}, {cert}")
        else:
            print(f"probe {probe['mx']}: no TLS ({probe['error']})")
    print(f"TLS seen:      first {_when(report['tls_first_seen'])}, last {_when(report['tls_last_seen'])}")
    for error in report.get("errors", []):
        print(f"error:         {error}")
    for event in report["events"]:
        print(f"event {_when(event['at'])}: {event['old_level'] or 'none'} -> "
              f"{event['new_level'] or 'none'} ({event['rule']})")
