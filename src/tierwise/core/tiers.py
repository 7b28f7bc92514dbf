"""Tiers, task kinds and the default kind → tier table."""

from __future__ import annotations

from enum import StrEnum

from tierwise.errors import InputError


class Tier(StrEnum):
    """Model tiers, cheapest last. ``up()`` is the escalation path."""

    LARGE = "large"
    MINI = "mini"
    NANO = "nano"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def up(self) -> Tier | None:
        """The next tier up, or None at the top."""
        return {Tier.NANO: Tier.MINI, Tier.MINI: Tier.LARGE, Tier.LARGE: None}[self]

    def down(self) -> Tier | None:
        return {Tier.LARGE: Tier.MINI, Tier.MINI: Tier.NANO, Tier.NANO: None}[self]


_RANK = {Tier.NANO: 0, Tier.MINI: 1, Tier.LARGE: 2}


class Stakes(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class TaskKind(StrEnum):
    """What a unit of work is; each kind has a default tier (``default_tier``)."""

    PLAN = "plan"
    AMBIGUOUS = "ambiguous"
    FINAL_QA = "final_qa"
    SYNTHESIS = "synthesis"
    CODE_EDIT = "code_edit"
    CODE_SEARCH = "code_search"
    DEBUG = "debug"
    FRONTEND = "frontend"
    REVIEW_FILE = "review_file"
    READ_DOCS = "read_docs"
    SCREENSHOT = "screenshot"
    TOOL_OP = "tool_op"
    CLASSIFY = "classify"
    EXTRACT = "extract"
    RANK = "rank"
    VALIDATE = "validate"
    PREPROCESS = "preprocess"


# Synthesis is large only when stakes are high (see default_tier); mini otherwise.
DEFAULT_TIER: dict[TaskKind, Tier] = {
    TaskKind.PLAN: Tier.LARGE,
    TaskKind.AMBIGUOUS: Tier.LARGE,
    TaskKind.FINAL_QA: Tier.LARGE,
    TaskKind.SYNTHESIS: Tier.LARGE,
    TaskKind.CODE_EDIT: Tier.MINI,
    TaskKind.CODE_SEARCH: Tier.MINI,
    TaskKind.DEBUG: Tier.MINI,
    TaskKind.FRONTEND: Tier.MINI,
    TaskKind.REVIEW_FILE: Tier.MINI,
    TaskKind.READ_DOCS: Tier.MINI,
    TaskKind.SCREENSHOT: Tier.MINI,
    TaskKind.TOOL_OP: Tier.MINI,
    TaskKind.CLASSIFY: Tier.NANO,
    TaskKind.EXTRACT: Tier.NANO,
    TaskKind.RANK: Tier.NANO,
    TaskKind.VALIDATE: Tier.NANO,
    TaskKind.PREPROCESS: Tier.NANO,
}


class Layer(StrEnum):
    """The three layers of a workflow, for the layer-swap experiment."""

    PLANNING = "planning"
    EXECUTION = "execution"
    VALIDATION = "validation"


def layer_of(kind: TaskKind) -> Layer:
    """Planning interprets and decides; validation checks and synthesizes the result; the rest executes."""
    if kind in (TaskKind.PLAN, TaskKind.AMBIGUOUS):
        return Layer.PLANNING
    if kind in (TaskKind.FINAL_QA, TaskKind.SYNTHESIS, TaskKind.VALIDATE):
        return Layer.VALIDATION
    return Layer.EXECUTION


def default_tier(kind: TaskKind, stakes: Stakes = Stakes.NORMAL) -> Tier:
    """The tier a kind runs on when no rule says otherwise."""
    if kind is TaskKind.SYNTHESIS and stakes is not Stakes.HIGH:
        return Tier.MINI
    return DEFAULT_TIER[kind]


def parse_tier(value: str | Tier) -> Tier:
    try:
        return Tier(str(value).strip().lower())
    except ValueError:
        raise InputError(f"unknown tier {value!r}: use one of {', '.join(t.value for t in Tier)}") from None


def parse_kind(value: str | TaskKind) -> TaskKind:
    try:
        return TaskKind(str(value).strip().lower())
    except ValueError:
        raise InputError(
            f"unknown task kind {value!r}: use one of {', '.join(k.value for k in TaskKind)}"
        ) from None


__all__ = [
    "DEFAULT_TIER",
    "Layer",
    "Stakes",
    "TaskKind",
    "Tier",
    "default_tier",
    "layer_of",
    "parse_kind",
    "parse_tier",
]
