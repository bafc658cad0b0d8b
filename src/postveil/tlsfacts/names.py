"""The one spelling of a domain name that both daemons use as its key in the facts cache."""

from __future__ import annotations


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
