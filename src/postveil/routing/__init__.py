"""Per-recipient routing decisions of postveil-milter, as pure functions without I/O.

The milter gathers facts (Subject, trigger header, detection verdict, envelope, each
recipient's TLS requirement, key and certificate lookups) and calls, in order:
:func:`find_triggers`, :func:`classify`, :func:`decide_recipient` for each recipient and
:func:`plan_delivery`. Each result carries the reason that the audit record and the SMTP
reply use.
"""

from postveil.routing.classify import Classification, MessageClass, VerdictLike, classify
from postveil.routing.decide import (
    CredentialStatus,
    Method,
    RecipientDecision,
    RecipientFacts,
    decide_recipient,
)
from postveil.routing.plan import (
    DeliveryPlan,
    PlanAction,
    RecipientGroup,
    VersionKind,
    plan_delivery,
)
from postveil.routing.record import DecisionRecord, RecipientRecord
from postveil.routing.triggers import Triggers, find_triggers

__all__ = [
    "Classification",
    "CredentialStatus",
    "DecisionRecord",
    "DeliveryPlan",
    "MessageClass",
    "Method",
    "PlanAction",
    "RecipientDecision",
    "RecipientFacts",
    "RecipientGroup",
    "RecipientRecord",
    "Triggers",
    "VerdictLike",
    "VersionKind",
    "classify",
    "decide_recipient",
    "find_triggers",
    "plan_delivery",
]
