"""Planner + subagents: the large tier plans and synthesizes, mini subagents and nano maps execute."""

from tierwise.errors import StepFailed
from tierwise.orchestration.executor import ExecLimits, Executor, StepOutcome, step_task
from tierwise.orchestration.orchestrate import RUN_KIND, Options, OrchestrationResult, check_goal, orchestrate
from tierwise.orchestration.plan import Plan, PlanLimits, Step, validate_plan
from tierwise.orchestration.planner import fallback_plan, make_plan
from tierwise.orchestration.subagent import run_subagent

__all__ = [
    "RUN_KIND",
    "ExecLimits",
    "Executor",
    "Options",
    "OrchestrationResult",
    "Plan",
    "PlanLimits",
    "Step",
    "StepFailed",
    "StepOutcome",
    "check_goal",
    "fallback_plan",
    "make_plan",
    "orchestrate",
    "run_subagent",
    "step_task",
    "validate_plan",
]
