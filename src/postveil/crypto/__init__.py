"""Encryption of outgoing mail: S/MIME, PGP/MIME, header protection and portal copies.

Everything works on raw message bytes (:class:`RawMessage`), so bodies and header
fields reach the recipient byte for byte as the sender wrote them. Failures raise
:class:`CryptoFailure`, a :class:`~postveil.errors.TemporaryFailure`.
"""

from postveil.crypto.encrypted import EncryptionCheck, check_encryption, detect_encryption
from postveil.crypto.errors import CryptoFailure, PgpFailure, SmimeFailure
from postveil.crypto.mime import HeaderEdits, HeaderOperation, RawMessage, milter_operations
from postveil.crypto.notice import build_notice
from postveil.crypto.pgp import PgpKeyring
from postveil.crypto.protect import build_inner_entity
from postveil.crypto.render import (
    MessageVersion,
    RenderContext,
    read_triggers,
    render_version,
)
from postveil.crypto.smime import CertificateStore, SmimeSigner

__all__ = [
    "CertificateStore",
    "CryptoFailure",
    "EncryptionCheck",
    "HeaderEdits",
    "HeaderOperation",
    "MessageVersion",
    "PgpFailure",
    "PgpKeyring",
    "RawMessage",
    "RenderContext",
    "SmimeFailure",
    "SmimeSigner",
    "build_inner_entity",
    "build_notice",
    "check_encryption",
    "detect_encryption",
    "milter_operations",
    "read_triggers",
    "render_version",
]
