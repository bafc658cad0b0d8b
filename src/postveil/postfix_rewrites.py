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
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from postveil.errors import TemporaryFailure

REWRITE_PARAMETERS = ("canonical_maps", "recipient_canonical_maps", "virtual_alias_maps")
"""Postfix parameters whose maps rewrite envelope recipients in cleanup."""

COMMAND_TIMEOUT = 10.0
"""Seconds that one postconf or postmap run may take."""


class PostconfError(Exception):
    """postconf or postmap could not be run, or postconf did not print the parameters."""


def read_parameters(names: tuple[str, ...], config_directory: str | None = None) -> dict[str, str]:
    """Return Postfix's values of ``names``, with ``$parameter`` references expanded.

    Raises PostconfError when postconf is missing, fails or leaves a name out.
    """
    command = [_tool("postconf")]
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

    The check errs towards "moved" in the cases it covers. It first writes the address
    as Postfix stores it, without quotes, backslashes, a source route or a trailing
    dot. It then looks it up under every key that virtual(5) and canonical(5) describe
    (``user+ext@domain``, ``user@domain``, ``user+ext``, ``user`` and ``@domain``, the
    bare forms whatever the domain), as written and in lower case. Any value it finds
    counts, even one that Postfix's search order would not reach. Addresses Postfix
    may route by their local part (``%``, ``!`` or ``@`` in it) and addresses with
    control characters count as moved without a lookup.

    NOTE: this follows the rules of the manual pages, not Postfix's code, so an
    address form not listed here could still be moved without being detected.
    """

    maps: dict[str, tuple[str, ...]]
    """Parameter name -> its lookup tables, for the parameters that are set in main.cf
    or in a master.cf ``-o`` override of any service."""
    delimiters: str
    """Postfix's ``recipient_delimiter``: each character separates an address extension."""
    config_directory: str | None = None

    @classmethod
    def from_postfix(cls, config_directory: str | None = None) -> RecipientRewrites:
        """Read the maps from Postfix's configuration. Raises PostconfError."""
        values = read_parameters((*REWRITE_PARAMETERS, "recipient_delimiter"), config_directory)
        tables = {name: split_table_list(values[name]) for name in REWRITE_PARAMETERS}
        delimiters = values["recipient_delimiter"]
        for name, value in read_service_overrides(config_directory):
            if name in tables:
                tables[name] += [table for table in split_table_list(value) if table not in tables[name]]
            elif name == "recipient_delimiter":
                delimiters += "".join(char for char in value if char not in delimiters)
        maps = {name: tuple(found) for name, found in tables.items() if found}
        return cls(maps, delimiters, config_directory)

    def moved(self, recipients: Sequence[str]) -> dict[str, str]:
        """Return, for each recipient that Postfix may move to another domain (or to a
        local user) after routing, the reason.

        Raises RewriteLookupError when a lookup fails.
        """
        moved: dict[str, str] = {}
        # Each recipient's addresses still to look up, all in the recipient's domain.
        pending: dict[str, set[str]] = {}
        for recipient in recipients:
            address = normalise_address(recipient)
            if _CONTROL_CHARACTERS.search(address):
                moved[recipient] = "the address has a control character, so Postfix's maps cannot be searched for it"
            elif _unsafe_local_part(address):
                moved[recipient] = "Postfix may route an address with %, ! or @ in its local part to another host"
            elif self.maps:
                pending[recipient] = {address}
        seen = {recipient: set(addresses) for recipient, addresses in pending.items()}
        last_parameter: dict[str, str] = {}
        for _ in range(MAX_REWRITE_DEPTH):
            addresses = {address for group in pending.values() for address in group}
            if not addresses:
                return moved
            found = self._look_up(addresses)
            next_pending: dict[str, set[str]] = {}
            for recipient, group in pending.items():
                domain = _domain(normalise_address(recipient))
                for address in group:
                    for parameter, result in found.get(address, ()):
                        target = normalise_address(result)
                        if _domain(target) != domain or _unsafe_local_part(target):
                            moved.setdefault(recipient, _moved_by(parameter))
                            continue
                        # Postfix carries an unmatched extension over to the result
                        # (propagate_unmatched_extensions), which may match again.
                        for follow in {target, self._with_extension(target, address)}:
                            if follow not in seen[recipient]:
                                seen[recipient].add(follow)
                                last_parameter[recipient] = parameter
                                next_pending.setdefault(recipient, set()).add(follow)
            pending = {
                recipient: group for recipient, group in next_pending.items() if recipient not in moved
            }
        for recipient in pending:
            moved.setdefault(recipient, _moved_by(last_parameter[recipient]))
        return moved

    def _look_up(self, addresses: set[str]) -> dict[str, list[tuple[str, str]]]:
        """Return address -> (parameter, target address) for every value found."""
        keys_of = {address: self._keys(address) for address in addresses}
        keys = sorted({key for address_keys in keys_of.values() for key in address_keys})
        values_by_key: dict[str, list[tuple[str, str]]] = {}
        for parameter, tables in self.maps.items():
            for table in tables:
                if "randmap:" in table:
                    # postmap returns one random element per lookup, and Postfix may
                    # pick any other, so every address may move.
                    for key in keys:
                        values_by_key.setdefault(key, []).append((parameter, "randmap"))
                    continue
                for key, value in self._query(table, keys).items():
                    for target in _targets(value):
                        values_by_key.setdefault(key, []).append((parameter, target))
        return {
            address: [item for key in address_keys for item in values_by_key.get(key, ())]
            for address, address_keys in keys_of.items()
        }

    def _keys(self, address: str) -> list[str]:
        keys: list[str] = []
        # Hash tables are searched in lower case, regexp and pcre tables as written.
        for form in dict.fromkeys((address, address.lower())):
            local, _, domain = form.rpartition("@")
            locals_ = [local]
            base = self._base(local)
            if base != local:
                locals_.append(base)
            for part in locals_:
                keys += [f"{part}@{domain}", part]
                if not _DOT_ATOM.fullmatch(part):
                    # Postfix 3.5 and later also search the quoted form.
                    quoted = '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
                    keys += [f"{quoted}@{domain}", quoted]
            keys.append(f"@{domain}")
        return list(dict.fromkeys(key for key in keys if key and key != "@"))

    def _base(self, local: str) -> str:
        """Return ``local`` without its address extension."""
        if not self.delimiters:
            return local
        base = re.split(f"[{re.escape(self.delimiters)}]", local, maxsplit=1)[0]
        return base or local

    def _with_extension(self, target: str, address: str) -> str:
        """Return ``target`` with the extension of ``address`` inserted before its @."""
        local = address.rpartition("@")[0]
        base = self._base(local)
        target_local, at, target_domain = target.rpartition("@")
        if base == local or not at:
            return target
        return f"{target_local}{local[len(base):]}@{target_domain}"

    def _query(self, table: str, keys: list[str]) -> dict[str, str]:
        return query_table(table, keys, self.config_directory, "recipient rewrite lookup")


def query_table(table: str, keys: list[str], config_directory: str | None, purpose: str) -> dict[str, str]:
    """Look ``keys`` up in one Postfix table with ``postmap -q -``; return key -> value
    for the keys found. Raises RewriteLookupError, naming ``purpose``, when it fails."""
    command = [_tool("postmap")]
    if config_directory is not None:
        command += ["-c", config_directory]
    command += ["-q", "-", table]
    try:
        result = _run(command, stdin="".join(f"{key}\n" for key in keys))
    except PostconfError as exc:
        raise RewriteLookupError(f"{purpose} in {table} failed: {exc}") from exc
    problem = [line for line in result.stderr.splitlines() if "fatal:" in line or "error:" in line]
    # postmap exits 1 both when no key is found and on an error, which it reports.
    if problem or result.returncode not in (0, 1):
        detail = problem[-1] if problem else f"exit status {result.returncode}"
        raise RewriteLookupError(f"{purpose} in {table} failed: {detail}")
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, separator, value = line.partition("\t")
        if separator:
            found[key] = value
    return found


_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_ROUTING_CHARACTERS = re.compile(r"[%!@]")


def normalise_address(address: str) -> str:
    """Return ``address`` as Postfix stores it: without a source route, quotes around
    or backslashes in the local part, or a trailing dot after the domain."""
    if address.startswith("@") and ":" in address:
        address = address.rpartition(":")[2]
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = local[1:-1]
    local = re.sub(r"\\(.)", r"\1", local)
    return f"{local}@{domain.rstrip('.')}"


def read_service_overrides(config_directory: str | None = None) -> list[tuple[str, str]]:
    """Return (parameter, value) for each ``-o`` override in master.cf, of any service.

    Raises PostconfError when postconf fails.
    """
    command = [_tool("postconf")]
    if config_directory is not None:
        command += ["-c", config_directory]
    result = _run([*command, "-P", "-x"])
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise PostconfError(f"postconf -P failed: {lines[-1]}")
    overrides = []
    for line in result.stdout.splitlines():
        name, separator, value = line.partition(" = ")
        if not separator:
            if not line.endswith(" ="):
                continue
            # postconf prints "service/type/name =" for an override to an empty value.
            name, value = line[: -len(" =")], ""
        overrides.append((name.rpartition("/")[2], value.strip()))
    return overrides


def _moved_by(parameter: str) -> str:
    return f"Postfix's {parameter} may move the recipient to another domain"


def _tool(name: str) -> str:
    """Return the path of a Postfix command, also when /usr/sbin is not in PATH."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin") or name


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
    """Return the addresses of a map value (a comma-separated list), in their case,
    because regexp and pcre tables see the case Postfix passes on."""
    return [item.strip() for item in re.split(r"[,\s]+", value) if item.strip()]


def _unsafe_local_part(address: str) -> bool:
    """Return whether Postfix's resolver may route ``address`` by its local part."""
    return _ROUTING_CHARACTERS.search(address.rpartition("@")[0]) is not None


def _domain(address: str) -> str:
    """Return the lower-cased domain of ``address`` ("" for a local user without one)."""
    return address.rpartition("@")[2].lower() if "@" in address else ""


class RecipientCheck(Protocol):
    """A check of recipients against settings read from Postfix's configuration."""

    @property
    def maps(self) -> dict[str, tuple[str, ...]]: ...

    def moved(self, recipients: Sequence[str]) -> dict[str, str]: ...


class RewriteMapsWatcher:
    """The current ``RecipientRewrites`` (or another ``RecipientCheck`` that ``reader``
    builds), read again whenever Postfix's main.cf or master.cf changes, or while it
    could not be read.

    Thread-safe. The tables themselves are queried live by postmap, so edits to them
    need no re-read. While Postfix's configuration cannot be read, ``moved`` raises,
    so mail routed by tls is deferred rather than sent unchecked.
    """

    def __init__(
        self,
        config_directory: str | None = None,
        *,
        reader: Callable[[str], RecipientCheck] = RecipientRewrites.from_postfix,
        description: str = "recipient rewrite maps",
    ) -> None:
        self._requested_directory = config_directory
        self._reader = reader
        self.description = description
        """Name of the settings the check reads, for error messages."""
        self._lock = threading.Lock()
        self._identity: tuple[object, ...] | None = None
        self._rewrites: RecipientCheck | None = None
        self.problem: str | None = None
        """Why the configuration could not be read, or None."""
        with self._lock:
            self._load()

    @property
    def maps(self) -> dict[str, tuple[str, ...]]:
        return self._rewrites.maps if self._rewrites is not None else {}

    def moved(self, recipients: Sequence[str]) -> dict[str, str]:
        """``RecipientRewrites.moved`` with the maps of the current configuration.

        Raises RewriteLookupError when the configuration cannot be read.
        """
        with self._lock:
            if self._rewrites is None or self._stat() != self._identity:
                self._load()
            rewrites = self._rewrites
            problem = self.problem
        if rewrites is None:
            raise RewriteLookupError(f"cannot read Postfix's {self.description}: {problem}")
        return rewrites.moved(recipients)

    def _load(self) -> None:
        try:
            directory = self._requested_directory
            if directory is None:
                directory = read_parameters(("config_directory",))["config_directory"]
            self._directory = directory
            identity = self._stat()
            self._rewrites = self._reader(directory)
            self._identity = identity
            self.problem = None
        except PostconfError as exc:
            self._rewrites = None
            self.problem = str(exc)

    def _stat(self) -> tuple[object, ...] | None:
        identities: list[object] = []
        for name in ("main.cf", "master.cf"):
            try:
                status = os.stat(os.path.join(self._directory, name))
            except OSError:
                identities.append(None)
                continue
            identities.append((status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns))
        return tuple(identities)
