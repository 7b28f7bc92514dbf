"""The over-decomposition guard of an orchestration (its spend comes from ``Scope.spend``).

Over-decomposition: orchestration tokens (planning, synthesis, the per-step framing)
against execution tokens; past a threshold, sibling steps are merged and the summary says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tierwise.core import Tier
from tierwise.orchestration.plan import FINAL_STEP, PLAN_STEP, Plan, Step
from tierwise.runtime.scope import CallRecord

STEP_FRAMING_TOKENS = 40  # "Overall goal: ... Your step (id, kind): ..." around each step's own text
EXPECTED_OUTPUT_TOKENS = 150  # a typical step result, for the estimate before anything runs


@dataclass(frozen=True, slots=True)
class Overhead:
    orchestration_tokens: int
    execution_tokens: int

    @property
    def ratio(self) -> float:
        return self.orchestration_tokens / max(self.execution_tokens, 1)


def _tok(text: str) -> int:
    return len(text) // 4 + 1  # an estimate is enough for a guard; no tokenizer on this path


def estimate_overhead(plan: Plan, goal: str, planner_tokens: int) -> Overhead:
    """Before running: planning (measured) + synthesis (about as big) + per-step framing vs the work."""
    framing = (_tok(goal) + STEP_FRAMING_TOKENS) * len(plan.steps)
    work = sum(
        _tok(s.instruction) + 400 * len(s.files) + _tok(" ".join(s.items or ())) + EXPECTED_OUTPUT_TOKENS
        for s in plan.steps
    )
    return Overhead(2 * planner_tokens + framing, work)


def measured_overhead(calls: Iterable[CallRecord], goal: str) -> Overhead:
    """After running, from the ledger: calls of __plan__/__final__ plus the framing of every step call."""
    orch = work = 0
    framing = _tok(goal) + STEP_FRAMING_TOKENS
    for c in calls:
        tokens = c.input_tokens + c.output_tokens
        if c.step_id in (PLAN_STEP, FINAL_STEP):
            orch += tokens
        elif c.step_id is not None:
            share = min(framing, c.input_tokens)
            orch += share
            work += tokens - share
    return Overhead(orch, work)


def merge_siblings(plan: Plan, tiers: Mapping[str, Tier]) -> tuple[Plan, list[str]]:
    """Merge steps with the same kind, tier and dependencies (and no items) into one step each.

    Dependents of a merged step are pointed at the merged one; the DAG stays acyclic because the
    merged step has exactly the dependencies every member had.
    """
    groups: dict[tuple[str, str, tuple[str, ...]], list[Step]] = {}
    for s in plan.steps:
        if s.items is None:
            key = (s.kind.value, tiers[s.id].value, tuple(sorted(s.depends_on)))
            groups.setdefault(key, []).append(s)
    rename: dict[str, str] = {}
    merged: dict[str, Step] = {}
    notes: list[str] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        head = members[0]
        text = "\n".join(f"{i}. {m.instruction}" for i, m in enumerate(members, 1))
        files = list(dict.fromkeys(f for m in members for f in m.files))
        merged[head.id] = head.model_copy(update={"instruction": "Do each of:\n" + text, "files": files})
        for m in members[1:]:
            rename[m.id] = head.id
        notes.append(f"merged {', '.join(m.id for m in members)} into {head.id}")
    if not rename:
        return plan, []
    steps: list[Step] = []
    for s in plan.steps:
        if s.id in rename:
            continue
        s = merged.get(s.id, s)
        deps = list(dict.fromkeys(rename.get(d, d) for d in s.depends_on))
        steps.append(s.model_copy(update={"depends_on": deps}))
    return Plan(steps=steps), notes
