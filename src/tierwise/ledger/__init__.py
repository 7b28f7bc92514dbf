"""The ledger: every run, call and step, with usage and cost, in SQLite or PostgreSQL."""

from tierwise.ledger.queries import SpendKey
from tierwise.ledger.records import CallRecord, RunRecord, StepRecord, new_id, utcnow
from tierwise.ledger.redact import REDACTED, redact
from tierwise.ledger.store import Ledger

__all__ = [
    "REDACTED",
    "CallRecord",
    "Ledger",
    "RunRecord",
    "SpendKey",
    "StepRecord",
    "new_id",
    "redact",
    "utcnow",
]
