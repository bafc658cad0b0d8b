"""The ``smime`` section: recipient certificates, the trust store and optional signing."""

from __future__ import annotations

from pydantic import model_validator

from postveil.config.types import Section


class SmimeSection(Section):
    certificate_dir: str = "/etc/postveil/smime/recipients"
    """Directory of PEM files with recipient certificates (and any intermediates). A
    certificate serves the email addresses in its subjectAltName and subject."""

    trust_store: str = "/etc/postveil/smime/trust.pem"
    """PEM file, or directory of PEM files, with the CA certificates that recipient
    certificates must chain to."""

    sign: bool = False
    """Sign each message with the organisation's certificate before encrypting it."""

    signing_certificate: str | None = None
    """PEM file with the signing certificate, optionally followed by its intermediates."""

    signing_key: str | None = None
    """PEM file with the unencrypted private key of ``signing_certificate``."""

    @model_validator(mode="after")
    def _check_signing(self) -> SmimeSection:
        if self.sign and not (self.signing_certificate and self.signing_key):
            raise ValueError("sign is true, so signing_certificate and signing_key are required")
        return self
