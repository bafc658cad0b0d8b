"""Hash-chained, HMAC-signed audit trail of postveil's decisions.

Writing (milter, policy daemon, admin commands)::

    from postveil.audit import AuditLog, MessageDecision, RecipientDecision

    audit = AuditLog(config.audit, program="postveil-milter")   # loads the HMAC key
    decision = MessageDecision(
        queue_id="4FzQ1k0XyZz",
        message_id="<abc@example.org>",
        sender="clinic@example.org",
        recipients=[RecipientDecision("pat@example.net", "tls", "rule:tls-verified")],
        detections={"ssn": 2},           # categories and counts, never the values
        tags=["subject:secure"],
        config_version=config.version,
    )
    try:
        audit.record_message(decision)   # append + one INFO line with the queue id
    except AuditWriteError:
        ...                              # reply 4xx: no delivery without a record

Other record kinds go through ``audit.append(record)``: TlsRequirementChange,
AdminOverride, ConfigEvent, DaemonEvent and PortalEvent. ``append`` returns an AppendResult
(seq, hash, file, time) and raises AuditWriteError, a TemporaryFailure, when the record
did not reach the file. Records are validated when constructed (InvalidRecordError).
One AuditLog per process is enough; it is thread-safe and survives ``fork``.

Reading: ``verify_chain`` checks files, ``search``/``read_records`` select records,
``build_report`` summarises a period. ``postveil audit`` wraps them for auditors.
"""

from postveil.audit.chain import AuditKey, generate_key_file, list_log_files
from postveil.audit.errors import AuditError, AuditKeyError, AuditWriteError, InvalidRecordError
from postveil.audit.records import (
    AdminOverride,
    ConfigEvent,
    DaemonEvent,
    MessageDecision,
    PortalEvent,
    RecipientDecision,
    Record,
    TlsRequirementChange,
)
from postveil.audit.summary import log_decision_summary
from postveil.audit.verify import BrokenLink, VerifyResult, verify_chain
from postveil.audit.writer import AppendResult, AuditLog

__all__ = [
    "AdminOverride",
    "AppendResult",
    "AuditError",
    "AuditKey",
    "AuditKeyError",
    "AuditLog",
    "AuditWriteError",
    "BrokenLink",
    "ConfigEvent",
    "DaemonEvent",
    "PortalEvent",
    "InvalidRecordError",
    "MessageDecision",
    "RecipientDecision",
    "Record",
    "TlsRequirementChange",
    "VerifyResult",
    "generate_key_file",
    "list_log_files",
    "log_decision_summary",
    "verify_chain",
]
