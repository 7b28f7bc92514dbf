"""What the computer-use agent's stages answer (pydantic schemas) and what a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

SYSTEM = "system:computer-use"
MAX_STEPS_LIMIT = 100
Outcome = Literal["progress", "no_effect", "error", "blocked"]


class PlanOut(BaseModel):
    """The interaction plan: short steps in order."""

    steps: list[str] = Field(description="the interactions to perform, in order, one short sentence each")


class Action(BaseModel):
    """The next action. ``target`` names an element as the snapshot shows it, e.g. ``button "Submit"``."""

    action: Literal["click", "type", "select", "scroll", "navigate", "done"]
    # String bounds (≤ 256 stay in the local grammar) keep a small model's answer from running on.
    target: str = Field(
        default="", max_length=200, description='element from the snapshot, e.g. button "Submit"'
    )
    value: str = Field(
        default="", max_length=256, description="text to type, option to select, URL, or up/down to scroll"
    )


class OutcomeOut(BaseModel):
    outcome: Outcome


class Verdict(BaseModel):
    success: bool
    reason: str = Field(default="", max_length=240)
    # Text copied from the final page that shows the goal reached: checked in code, the claim alone is not.
    evidence: str = Field(default="", max_length=200, description="exact text from the final page, or empty")


@dataclass(slots=True)
class StepResult:
    n: int
    action: str
    target: str
    value: str
    observed: str  # what the browser reported: changed, unchanged, blocked, error, invalid_action
    outcome: str  # the classifier's class: progress, no_effect, error, blocked (or unclassified)
    url: str
    error: str | None = None
    screenshot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class ComputerUseResult:
    run_id: str
    goal: str
    start_url: str
    allowed_hosts: list[str]
    plan: list[str]
    steps: list[StepResult]
    final_url: str
    done: bool  # the acting model declared the goal reached
    success: bool  # evidence of the goal found on the final page, checked in code (``evidence``)
    verdict: str  # why: what was found or missing
    stopped: str  # done | max_steps | budget
    blocked_requests: list[str]
    spend: dict[str, Any]
    screenshots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the run adapted, e.g. text-only observation
    evidence: dict[str, Any] = field(default_factory=dict)  # the check: source, found, missing, why
    judge: str = ""  # the judge model's own words (a claim, not the verdict)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        d["steps"] = [s.to_dict() for s in self.steps]
        d.update(self.spend)
        del d["spend"]
        return d
