"""The ``pgp`` section: postveil's own GnuPG home with the recipients' public keys."""

from __future__ import annotations

from postveil.config.types import Duration, Section


class PgpSection(Section):
    gnupg_home: str = "/var/lib/postveil/gnupg"
    """GnuPG home holding the recipients' public keys. Every key in it is used as trusted,
    because an admin imported it with ``postveil keys import``."""

    gpg_binary: str = "gpg"
    """gpg executable, a name looked up in PATH or an absolute path."""

    timeout: Duration = 30.0
    """Time one gpg run (listing, encryption, import) may take; then gpg is killed and the
    message gets a temporary failure."""
