"""Computer-use agent: drive headless Chromium toward a goal (plan, observe/act turns, a final verdict).

The stages describe their work by kind (and a screenshot's need for vision); the router decides the
tiers (by default large plans and judges, mini acts, nano classifies outcomes).

    allowlist = check_inputs(url, goal, max_steps, allow_hosts)
    meta = run_metadata(url, max_steps, allowlist)
    async with Session() as s, s.run(SYSTEM, run_label(goal), metadata=meta) as scope:
        result = await run(scope, url, goal, max_steps=max_steps, allow_hosts=allow_hosts)
"""

from tierwise.systems.computer_use.agent import check_inputs, run, run_label, run_metadata
from tierwise.systems.computer_use.types import (
    MAX_STEPS_LIMIT,
    SYSTEM,
    Action,
    ComputerUseResult,
    OutcomeOut,
    PlanOut,
    StepResult,
    Verdict,
)

__all__ = [
    "MAX_STEPS_LIMIT",
    "SYSTEM",
    "Action",
    "ComputerUseResult",
    "OutcomeOut",
    "PlanOut",
    "StepResult",
    "Verdict",
    "check_inputs",
    "run",
    "run_label",
    "run_metadata",
]
