"""Planner + subagents: the large tier plans and synthesizes, mini subagents and nano maps execute."""

from tierwise.orchestration.executor import ExecLimits, Executor, StepFailed, StepOutcome
from tierwise.orchestration.orchestrate import Options, OrchestrationResult, orchestrate
from tierwise.orchestration.plan import Plan, PlanLimits, Step, validate_plan
from tierwise.orchestration.planner import assign_tiers, fallback_plan, make_plan
from tierwise.orchestration.subagent import run_subagent

__all__ = [
    "ExecLimits",
    "Executor",
    "Options",
    "OrchestrationResult",
    "Plan",
    "PlanLimits",
    "Step",
    "StepFailed",
    "StepOutcome",
    "assign_tiers",
    "fallback_plan",
    "make_plan",
    "orchestrate",
    "run_subagent",
    "validate_plan",
]
