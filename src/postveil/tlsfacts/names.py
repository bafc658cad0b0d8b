"""The one spelling of a domain name that both daemons use as its key in the facts cache."""

from __future__ import annotations

import ipaddress
import re

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)*"
                        r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_PORT = r":(?:\d{1,5}|[a-z][a-z0-9-]{0,31})"
"""The port of a Postfix next hop: a number or a service name from /etc/services."""


def ascii_domain(name: str) -> str:
    """Return ``name`` in lower case, without a trailing dot, with Unicode labels in
    A-label form (``bücher.example`` becomes ``xn--bcher-kva.example``).

    The milter gets the recipient as the client wrote it, while Postfix queries the
    socketmap in UTF-8 for an SMTPUTF8 recipient (checked with Postfix 3.7), so both
    must map each form to the same key. A name that is not valid IDNA is returned
    lower-cased but otherwise unchanged, and matches no facts.

    NOTE: the conversion is Python's ``idna`` codec (IDNA 2003), which maps ``ß`` to
    ``ss``. Where Postfix resolves such a name under IDNA 2008 instead, the facts are
    looked up for a different name than the one Postfix connects to.
    """
    domain = name.strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def domain_from_key(key: str) -> str | None:
    """Map a policy table key to the domain whose facts apply, or None for NOTFOUND.

    ``[host]:port`` and ``[host]`` (smart hosts from transport maps or relayhost)
    become ``host``, and ``domain:port`` becomes ``domain``. Postfix takes the port as a
    number or a service name (``:smtp``). A Unicode name becomes its A-label form, the milter's key. IP literals, ``.parent`` keys and invalid names have no facts:
    postveil never consults a parent domain for a subdomain.
    """
    text = key.strip().lower()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(_PORT, rest)):
            return None
        text = host
    elif re.fullmatch(r"[^:]+" + _PORT, text):
        text = text.rsplit(":", 1)[0]
    text = ascii_domain(text)
    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        pass
    if not _DOMAIN_RE.match(text):
        return None
    return text
