"""Postfix settings that send a recipient to another next hop than its own domain.

Postfix's smtp client looks its TLS policy up by next hop. For a recipient whose next
hop is its own domain, postveil-policyd returns that domain's requirement. Mail
sent through ``relayhost``, a ``transport_maps`` entry such as ``smtp:[mx.example.org]``
or a transport with a fixed next hop is looked up under that next hop instead. The
recipient domain's requirement, and its TLS hold, then do not apply. Beyond a relay,
no TLS can be enforced at all. The milter therefore counts such a recipient as not
protected by TLS. The same holds for every recipient while ``smtp_tls_policy_maps``
does not ask postveil-policyd first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from postveil.postfix_rewrites import (
    normalise_address,
    query_table,
    read_parameters,
    read_service_overrides,
    split_table_list,
)
from postveil.tlsfacts.names import ascii_domain, domain_from_key

RELAY_PARAMETERS = (
    "relayhost",
    "smtp_fallback_relay",
    "sender_dependent_relayhost_maps",
    "sender_dependent_default_transport_maps",
)
"""Parameters that, when set, may send any remote recipient through another next hop.

Postfix tries ``smtp_fallback_relay`` after a temporary failure at the recipient's own
servers, "TLS is required, but was not offered" among them. The sender-dependent maps
are not searched with the sender: setting one counts for every recipient."""

TRANSPORT_PARAMETERS = ("default_transport", "relay_transport")
"""``transport:nexthop`` values that apply to remote domains without a transport_maps entry."""

SMTP_TRANSPORTS = frozenset({"", "smtp", "relay"})
"""Transports of Postfix's default master.cf that deliver with the smtp client and its
``smtp_tls_policy_maps``. Any other name may run with other TLS settings."""


@dataclass(frozen=True)
class NextHopRoutes:
    """The local Postfix's routing settings, checked against each recipient's domain."""

    relays: dict[str, str]
    """Parameter -> value, for each parameter of RELAY_PARAMETERS that is set."""
    transports: dict[str, tuple[str, ...]]
    """Parameter of TRANSPORT_PARAMETERS -> every value it has (main.cf and master.cf)."""
    transport_maps: tuple[str, ...]
    delimiters: str
    config_directory: str | None = None
    policy_problem: str | None = None
    """Reason that Postfix's ``smtp_tls_policy_maps`` may not return postveil-policyd's
    policy for any recipient, or None."""
    policy_tables_before: tuple[str, ...] = ()
    """Tables that ``smtp_tls_policy_maps`` searches before postveil-policyd's socketmap.
    A domain found in one of them gets that table's policy instead."""

    @classmethod
    def from_postfix(cls, config_directory: str | None = None, *, socketmap_listen: str | None = None) -> NextHopRoutes:
        """Read the routing settings of main.cf and master.cf. Raises PostconfError.

        With ``socketmap_listen`` (``policyd.socketmap_listen``), also check that every
        ``smtp_tls_policy_maps`` value, in main.cf and in master.cf overrides, names
        postveil-policyd's socketmap.
        """
        names = (
            *RELAY_PARAMETERS,
            *TRANSPORT_PARAMETERS,
            "transport_maps",
            "recipient_delimiter",
            "smtp_tls_policy_maps",
        )
        values = read_parameters(names, config_directory)
        relays = {name: values[name] for name in RELAY_PARAMETERS if values[name]}
        transports = {name: [values[name]] for name in TRANSPORT_PARAMETERS}
        tables = split_table_list(values["transport_maps"])
        policy_maps = [values["smtp_tls_policy_maps"]]
        for name, value in read_service_overrides(config_directory):
            if name in RELAY_PARAMETERS and value:
                relays.setdefault(name, value)
            elif name in transports:
                transports[name].append(value)
            elif name == "transport_maps":
                tables += [table for table in split_table_list(value) if table not in tables]
            elif name == "smtp_tls_policy_maps":
                policy_maps.append(value)
        problem = None
        before: list[str] = []
        if socketmap_listen is not None:
            problem, before = _check_policy_maps(policy_maps, socketmap_listen)
        return cls(
            relays,
            {name: tuple(found) for name, found in transports.items()},
            tuple(tables),
            values["recipient_delimiter"],
            config_directory,
            problem,
            tuple(before),
        )

    @property
    def maps(self) -> dict[str, tuple[str, ...]]:
        """Parameter -> its values or tables, for the settings that may move a recipient
        off its own domain's next hop."""
        found: dict[str, tuple[str, ...]] = {name: (value,) for name, value in self.relays.items()}
        for name, values in self.transports.items():
            moving = tuple(value for value in values if value.partition(":")[2].strip())
            if moving:
                found[name] = moving
        if self.transport_maps:
            found["transport_maps"] = self.transport_maps
        if self.policy_problem is not None or self.policy_tables_before:
            found["smtp_tls_policy_maps"] = self.policy_tables_before
        return found

    def moved(self, recipients: Sequence[str]) -> dict[str, str]:
        """Return :meth:`rerouted`, under the name the ``RecipientCheck`` interface uses."""
        return self.rerouted(recipients)

    def rerouted(self, recipients: Sequence[str]) -> dict[str, str]:
        """Return, for each recipient Postfix may send to another next hop than its own
        domain, the reason. Raises RewriteLookupError when a transport_maps lookup fails.

        NOTE: a recipient that a rewrite map moves to another address in the same
        domain is checked under its original address only.
        """
        rerouted: dict[str, str] = {}
        for recipient in recipients:
            if self.policy_problem is not None:
                rerouted[recipient] = self.policy_problem
            for name, value in self.relays.items():
                rerouted.setdefault(recipient, f"Postfix may send the recipient through {name} {value}")
            for name, values in self.transports.items():
                for value in values:
                    problem = _route_problem(value, recipient)
                    if problem is not None:
                        rerouted.setdefault(recipient, f"Postfix's {name} {value} {problem}")
        pending = [recipient for recipient in recipients if recipient not in rerouted]
        if pending and self.policy_tables_before:
            self._check_tables_before(pending, rerouted)
            pending = [recipient for recipient in pending if recipient not in rerouted]
        if not pending or not self.transport_maps:
            return rerouted
        keys_of = {recipient: self._keys(recipient) for recipient in pending}
        keys = sorted({key for recipient_keys in keys_of.values() for key in recipient_keys})
        for table in self.transport_maps:
            found = self._query(table, keys)
            for recipient, recipient_keys in keys_of.items():
                for key in recipient_keys:
                    entry = found.get(key)
                    problem = _route_problem(entry, recipient) if entry is not None else None
                    if problem is not None:
                        rerouted.setdefault(recipient, f"Postfix's transport_maps entry {key} {problem}")
        return rerouted

    def _check_tables_before(self, recipients: list[str], rerouted: dict[str, str]) -> None:
        """Add each recipient whose domain a table before postveil-policyd's socketmap
        contains, because Postfix uses the first table that has the key."""
        domain_of = {recipient: ascii_domain(normalise_address(recipient).rpartition("@")[2]) for recipient in recipients}
        keys = sorted(set(domain_of.values()))
        for table in self.policy_tables_before:
            found = query_table(table, keys, self.config_directory, "TLS policy lookup")
            for recipient, domain in domain_of.items():
                if domain in found:
                    rerouted.setdefault(
                        recipient, f"Postfix's smtp_tls_policy_maps table {table} has its own policy for {domain}"
                    )

    def _keys(self, recipient: str) -> list[str]:
        """Return the transport(5) search keys of ``recipient``: the address with and
        without its extension, the domain, each parent domain with a leading dot, and ``*``."""
        address = normalise_address(recipient).lower()
        local, _, domain = address.rpartition("@")
        keys = [address]
        if self.delimiters:
            base = re.split(f"[{re.escape(self.delimiters)}]", local, maxsplit=1)[0]
            if base and base != local:
                keys.append(f"{base}@{domain}")
        keys.append(domain)
        labels = domain.split(".")
        keys += ["." + ".".join(labels[index:]) for index in range(len(labels))]
        keys.append("*")
        ascii_name = ascii_domain(domain)
        if ascii_name != domain:
            keys.append(ascii_name)
        return list(dict.fromkeys(keys))

    def _query(self, table: str, keys: list[str]) -> dict[str, str]:
        found = query_table(table, keys, self.config_directory, "transport lookup")
        return {key: value.strip() for key, value in found.items()}


def _route_problem(value: str, recipient: str) -> str | None:
    """Return why a ``transport:nexthop`` value takes ``recipient`` off its domain's
    TLS policy, or None when the smtp client delivers to the recipient's own domain."""
    transport, _, nexthop = value.partition(":")
    transport = transport.strip()
    if transport not in SMTP_TRANSPORTS:
        return f"uses transport {transport}, whose TLS settings postveil does not check"
    domain = ascii_domain(normalise_address(recipient).rpartition("@")[2])
    for hop in re.split(r"[,\s]+", nexthop.strip()):
        if hop and domain_from_key(hop) != domain:
            return f"sends the recipient to next hop {hop}"
    return None


def _check_policy_maps(values: list[str], socketmap_listen: str) -> tuple[str | None, list[str]]:
    """Check ``smtp_tls_policy_maps`` values against postveil-policyd's listener.

    Returns the problem (a value without postveil's socketmap), or None, and the
    tables that the values search before the socketmap.
    """
    prefix = f"socketmap:{socketmap_listen}:"
    before: list[str] = []
    for value in values:
        tables = split_table_list(value)
        position = next((index for index, table in enumerate(tables) if table.startswith(prefix)), None)
        if position is None:
            shown = value or "empty"
            return (
                f"Postfix's smtp_tls_policy_maps ({shown}) does not query postveil-policyd at {socketmap_listen}",
                [],
            )
        before += [table for table in tables[:position] if table not in before]
    return None, before
