"""Support triage: a fitted nano intent classifier, KB-grounded drafts and escalation notes over a Scope.

``await triage(scope, tickets, examples=..., labels=..., kb=...)`` inside
``async with session.run("system:support-triage", ...) as scope``; the readers turn files into its inputs.
Importing the package loads scikit-learn and scipy (the classifier): the CLI imports it only when it runs.
"""

from tierwise.systems.support_triage.inputs import (
    URGENCIES,
    Ticket,
    read_examples,
    read_kb,
    read_labels,
    read_tickets,
    urgency_of,
)
from tierwise.systems.support_triage.intents import OUT_OF_SCOPE, IntentClassifier, Prediction, load_or_fit
from tierwise.systems.support_triage.output import LineWriter
from tierwise.systems.support_triage.pipeline import (
    DRAFT_STEP,
    EMBED_MODEL,
    ESCALATE_STEP,
    Draft,
    TriageItem,
    TriageReport,
    fitting_set,
    triage,
)

__all__ = [
    "DRAFT_STEP",
    "EMBED_MODEL",
    "ESCALATE_STEP",
    "OUT_OF_SCOPE",
    "URGENCIES",
    "Draft",
    "IntentClassifier",
    "LineWriter",
    "Prediction",
    "Ticket",
    "TriageItem",
    "TriageReport",
    "fitting_set",
    "load_or_fit",
    "read_examples",
    "read_kb",
    "read_labels",
    "read_tickets",
    "triage",
    "urgency_of",
]
