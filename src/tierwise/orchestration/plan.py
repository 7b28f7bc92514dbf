"""``Plan`` and ``Step``: the DAG the large tier writes, and the checks a repair prompt can quote."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from tierwise.core import TaskKind, Tier

# Step ids the orchestrator keeps for itself in the ledger.
PLAN_STEP = "__plan__"
FINAL_STEP = "__final__"
RESERVED_IDS = frozenset({PLAN_STEP, FINAL_STEP})


class Step(BaseModel):
    """One unit of work: what to do, on which tier (a hint), with which inputs."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="short unique id, letters, digits, - or _", min_length=1, max_length=40)
    kind: TaskKind = Field(description="what kind of work this step is")
    instruction: str = Field(description="what the step must do, self-contained", min_length=1)
    tier: Tier | None = Field(default=None, description="tier hint: large, mini or nano")
    files: list[str] = Field(default_factory=list, description="workspace files the step reads")
    depends_on: list[str] = Field(
        default_factory=list, description="ids of earlier steps whose outputs this step needs"
    )
    items: list[str] | None = Field(
        default=None, description="for volume (nano) steps: the items to apply the instruction to"
    )
    ambiguity: float | None = Field(default=None, ge=0, le=1, description="how ambiguous the input is")


class Plan(BaseModel):
    """A DAG of steps. The final answer is written after all of them by the synthesis phase."""

    model_config = ConfigDict(extra="forbid")

    steps: list[Step] = Field(description="the steps, in any order; depends_on makes the DAG")

    def by_id(self) -> dict[str, Step]:
        return {s.id: s for s in self.steps}


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """Caps against careless fan-out: steps in a plan, items of a map step, dependents, depth."""

    max_steps: int = 24
    max_items: int = 2000
    max_fanout: int = 16  # steps that may depend directly on one step
    max_depth: int = 6  # longest dependency chain, in steps


def validate_plan(plan: Plan, limits: PlanLimits = PlanLimits()) -> list[str]:
    """Every problem with ``plan``, each a sentence naming the step, so a repair prompt can quote them."""
    errors: list[str] = []
    if not plan.steps:
        return ["the plan has no steps: add at least one step"]
    if len(plan.steps) > limits.max_steps:
        errors.append(f"the plan has {len(plan.steps)} steps; the cap is {limits.max_steps}: merge steps")
    ids: set[str] = set()
    for step in plan.steps:
        if step.id in ids:
            errors.append(f"step id {step.id!r} is used twice: ids must be unique")
        if step.id in RESERVED_IDS:
            errors.append(f"step id {step.id!r} is reserved: pick another id")
        if not all(c.isalnum() or c in "-_" for c in step.id):
            errors.append(f"step id {step.id!r} may only contain letters, digits, '-' and '_'")
        ids.add(step.id)
    dependents: dict[str, int] = {}
    for step in plan.steps:
        for dep in step.depends_on:
            if dep == step.id:
                errors.append(f"step {step.id!r} depends on itself")
            elif dep not in ids:
                errors.append(f"step {step.id!r} depends on {dep!r}, which is not a step of the plan")
            dependents[dep] = dependents.get(dep, 0) + 1
        if step.items is not None:
            if not step.items:
                errors.append(f"step {step.id!r} has an empty items list: drop items or add some")
            if len(step.items) > limits.max_items:
                errors.append(
                    f"step {step.id!r} maps over {len(step.items)} items; the cap is {limits.max_items}"
                )
        for path in step.files:
            if not path.strip():
                errors.append(f"step {step.id!r} lists an empty file path")
    for dep, count in dependents.items():
        if count > limits.max_fanout:
            errors.append(
                f"{count} steps depend directly on {dep!r}; the fan-out cap is {limits.max_fanout}: "
                "use one step with items instead"
            )
    if errors:
        return errors  # cycles and depth need well-formed references
    cycle = find_cycle(plan)
    if cycle:
        return [f"the steps form a cycle: {' -> '.join(cycle)}: remove one of these dependencies"]
    depth = plan_depth(plan)
    if depth > limits.max_depth:
        errors.append(f"the longest dependency chain has {depth} steps; the cap is {limits.max_depth}")
    return errors


def find_cycle(plan: Plan) -> list[str]:
    """One cycle as a list of ids (first id repeated at the end), or [] when the plan is acyclic."""
    deps = {s.id: s.depends_on for s in plan.steps}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in deps.get(node, []):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for step_id in deps:
        if step_id not in state:
            found = visit(step_id)
            if found:
                return found
    return []


def plan_depth(plan: Plan) -> int:
    """Steps on the longest dependency chain (the plan must be acyclic)."""
    deps = {s.id: s.depends_on for s in plan.steps}
    memo: dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in memo:
            memo[node] = 1 + max((depth(d) for d in deps.get(node, [])), default=0)
        return memo[node]

    return max(depth(s) for s in deps)


def topological_order(plan: Plan) -> list[Step]:
    """Steps ordered so that each comes after its dependencies (stable for equal ranks)."""
    by_id = plan.by_id()
    done: set[str] = set()
    order: list[Step] = []

    def visit(step: Step) -> None:
        if step.id in done:
            return
        done.add(step.id)
        for dep in step.depends_on:
            visit(by_id[dep])
        order.append(step)

    for step in plan.steps:
        visit(step)
    return order
