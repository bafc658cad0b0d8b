"""Postfix address maps that rewrite recipients after postveil-milter has routed them.

The milter routes each recipient as the client sent it at RCPT TO. Postfix's cleanup
service applies these maps later, so a recipient that a map moves to another domain
is delivered under that domain's TLS policy. The milter therefore looks each recipient
it would route by ``tls`` up in these maps with ``postmap -q``, and one that may move
to another domain does not count as protected by TLS.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from postveil.errors import TemporaryFailure

REWRITE_PARAMETERS = ("canonical_maps", "recipient_canonical_maps", "virtual_alias_maps")
"""Postfix parameters whose maps rewrite envelope recipients in cleanup."""

COMMAND_TIMEOUT = 10.0
"""Seconds that one postconf or postmap run may take."""


class PostconfError(Exception):
    """postconf could not be run or did not print the parameters."""


def read_parameters(names: tuple[str, ...], config_directory: str | None = None) -> dict[str, str]:
    """Return Postfix's values of ``names``, with ``$parameter`` references expanded.

    Raises PostconfError when postconf is missing, fails or leaves a name out.
    """
    command = ["postconf"]
    if config_directory is not None:
        command += ["-c", config_directory]
    command += ["-x", *names]
    result = _run(command)
    if result.returncode != 0:
        # postconf's last line names the cause ("fatal: open /etc/postfix/main.cf: ...").
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise PostconfError(f"postconf failed: {lines[-1]}")
    values: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, separator, value = line.partition(" = ")
        if not separator:
            # postconf prints "name =" for an empty value.
            name, value = line.rstrip(" ="), ""
        values[name.strip()] = value.strip()
    missing = [name for name in names if name not in values]
    if missing:
        raise PostconfError(f"postconf did not print {', '.join(missing)}")
    return values


def _run(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostconfError(f"cannot run {command[0]}: {exc}") from exc


class RewriteLookupError(TemporaryFailure):
    """postmap could not look a recipient up, so routing by tls cannot be trusted."""


MAX_REWRITE_DEPTH = 10
"""Rounds of lookups for addresses that a map rewrites within their own domain. An
address still being rewritten after that many counts as moved to another domain."""


@dataclass(frozen=True)
class RecipientRewrites:
    """The local Postfix's maps that rewrite recipients, queried with ``postmap -q``.

    The check over-approximates Postfix's cleanup service. It looks every recipient up
    under all the keys cleanup may use (``user+ext@domain``, ``user@domain`` and
    ``@domain``) in every map, and any value it finds counts, even one that Postfix's
    search order would not reach. A recipient may thus count as moved when Postfix
    would leave it, never the reverse for the maps read here.
    """

    maps: dict[str, tuple[str, ...]]
    """Parameter name -> its lookup tables, for the parameters that are set."""
    delimiters: str
    """Postfix's ``recipient_delimiter``: each character separates an address extension."""
    config_directory: str | None = None

    @classmethod
    def from_postfix(cls, config_directory: str | None = None) -> RecipientRewrites:
        """Read the maps from Postfix's configuration. Raises PostconfError."""
        values = read_parameters((*REWRITE_PARAMETERS, "recipient_delimiter"), config_directory)
        maps = {
            name: tuple(split_table_list(values[name]))
            for name in REWRITE_PARAMETERS
            if values[name]
        }
        return cls(maps, values["recipient_delimiter"], config_directory)

    def moved(self, recipients: Sequence[str]) -> dict[str, str]:
        """Return, for each recipient that a map may move to another domain (or to a
        local user), the parameter whose map does it.

        Raises RewriteLookupError when a lookup fails.
        """
        moved: dict[str, str] = {}
        if not self.maps:
            return moved
        # Each recipient's addresses still to look up, all in the recipient's domain.
        pending = {recipient: {recipient.lower()} for recipient in recipients}
        seen = {recipient: set(addresses) for recipient, addresses in pending.items()}
        last_parameter: dict[str, str] = {}
        for _ in range(MAX_REWRITE_DEPTH):
            addresses = {address for group in pending.values() for address in group}
            if not addresses:
                return moved
            found = self._look_up(addresses)
            next_pending: dict[str, set[str]] = {}
            for recipient, group in pending.items():
                domain = _domain(recipient.lower())
                for address in group:
                    for parameter, target in found.get(address, ()):
                        if _domain(target) != domain:
                            moved.setdefault(recipient, parameter)
                        elif target not in seen[recipient]:
                            seen[recipient].add(target)
                            last_parameter[recipient] = parameter
                            next_pending.setdefault(recipient, set()).add(target)
            pending = {
                recipient: group for recipient, group in next_pending.items() if recipient not in moved
            }
        for recipient in pending:
            moved.setdefault(recipient, last_parameter[recipient])
        return moved

    def _look_up(self, addresses: set[str]) -> dict[str, list[tuple[str, str]]]:
        """Return address -> (parameter, target address) for every value found."""
        keys_of = {address: self._keys(address) for address in addresses}
        keys = sorted({key for address_keys in keys_of.values() for key in address_keys})
        values_by_key: dict[str, list[tuple[str, str]]] = {}
        for parameter, tables in self.maps.items():
            for table in tables:
                for key, value in self._query(table, keys).items():
                    for target in _targets(value):
                        values_by_key.setdefault(key, []).append((parameter, target))
        return {
            address: [item for key in address_keys for item in values_by_key.get(key, ())]
            for address, address_keys in keys_of.items()
        }

    def _keys(self, address: str) -> list[str]:
        local, _, domain = address.rpartition("@")
        keys = [address]
        if self.delimiters:
            base = re.split(f"[{re.escape(self.delimiters)}]", local, maxsplit=1)[0]
            if base and base != local:
                keys.append(f"{base}@{domain}")
        keys.append(f"@{domain}")
        return keys

    def _query(self, table: str, keys: list[str]) -> dict[str, str]:
        command = ["postmap"]
        if self.config_directory is not None:
            command += ["-c", self.config_directory]
        command += ["-q", "-", table]
        try:
            result = _run(command, stdin="".join(f"{key}\n" for key in keys))
        except PostconfError as exc:
            raise RewriteLookupError(f"recipient rewrite lookup in {table} failed: {exc}") from exc
        problem = [line for line in result.stderr.splitlines() if "fatal:" in line or "error:" in line]
        # postmap exits 1 both when no key is found and on an error, which it reports.
        if problem or result.returncode not in (0, 1):
            detail = problem[-1] if problem else f"exit status {result.returncode}"
            raise RewriteLookupError(f"recipient rewrite lookup in {table} failed: {detail}")
        found: dict[str, str] = {}
        for line in result.stdout.splitlines():
            key, separator, value = line.partition("\t")
            if separator:
                found[key] = value
        return found


def split_table_list(value: str) -> list[str]:
    """Split a Postfix list of lookup tables on commas and white space outside braces
    (``inline:{a=b, c=d}`` is one table)."""
    tables: list[str] = []
    current: list[str] = []
    depth = 0
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(depth - 1, 0)
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                tables.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        tables.append("".join(current))
    return tables


def _targets(value: str) -> list[str]:
    """Return the lower-cased addresses of a map value (a comma-separated list)."""
    return [item.strip().lower() for item in re.split(r"[,\s]+", value) if item.strip()]


def _domain(address: str) -> str:
    """Return the domain of ``address`` ("" for a local user without one)."""
    return address.rpartition("@")[2] if "@" in address else ""


class RewriteMapsWatcher:
    """The current ``RecipientRewrites``, read again whenever Postfix's main.cf changes.

    Thread-safe. Only main.cf is watched: the tables themselves are queried live by
    postmap, so edits to them need no re-read.
    """

    def __init__(self, config_directory: str | None = None) -> None:
        """Read the maps. Raises PostconfError when postconf cannot tell them."""
        if config_directory is None:
            config_directory = read_parameters(("config_directory",))["config_directory"]
        self._main_cf = os.path.join(config_directory, "main.cf")
        self._config_directory = config_directory
        self._lock = threading.Lock()
        self._identity = self._stat()
        self._rewrites = RecipientRewrites.from_postfix(config_directory)

    @property
    def maps(self) -> dict[str, tuple[str, ...]]:
        return self._rewrites.maps

    def moved(self, recipients: Sequence[str]) -> dict[str, str]:
        """``RecipientRewrites.moved`` with the maps of the current main.cf.

        Raises RewriteLookupError when main.cf changed and cannot be read again.
        """
        with self._lock:
            identity = self._stat()
            if identity != self._identity:
                try:
                    self._rewrites = RecipientRewrites.from_postfix(self._config_directory)
                except PostconfError as exc:
                    raise RewriteLookupError(f"cannot read the changed {self._main_cf}: {exc}") from exc
                self._identity = identity
            rewrites = self._rewrites
        return rewrites.moved(recipients)

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            status = os.stat(self._main_cf)
        except OSError:
            return None
        return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
