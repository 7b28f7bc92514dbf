"""The outer layer: validate the answer, repair, then escalate; and climb a cascade's chain.

Structured output is validated against the task's schema; an invalid answer gets ``repair_attempts``
repair prompts quoting the errors, then moves one step up (the cascade's next model, else the tier
above). A cascade decision also carries a validator (``Escalation.check``): a valid answer whose
confidence is below ``tau`` is recorded as ``rejected`` and the next model of the chain is asked. This is
the cascade's accept-or-escalate loop; there is no second one.

Cascade routing (``cascade+``) buys a vote before judging (``Escalation.votes``): the answers before the
last of the vote are recorded as ``opinion``, and the validator judges them all at once. The call returns
the answer ``Escalation.pick`` names among those paid (the vote's winner, which may be an earlier, cheaper
model's); without ``pick``, the latest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tierwise.core import Task, Usage
from tierwise.errors import InvalidOutput
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.providers.base import Completion
from tierwise.runtime.attempt import Leg
from tierwise.runtime.cutoff import brevity_messages, cut_off
from tierwise.runtime.events import Recorder
from tierwise.runtime.fallback import Fallback, Send
from tierwise.runtime.validation import OutputInvalid, check_answer, repair_messages, validate

CallFn = Callable[[Task], Awaitable[str]]


@dataclass(slots=True)
class Outcome:
    """The accepted answer of a call, with what every attempt of it cost."""

    completion: Completion
    output: Any
    leg: Leg
    usage: Usage = field(default_factory=Usage)
    cost: float | None = 0.0
    attempts: int = 0
    notes: list[str] = field(default_factory=list)
    confidence: float | None = None

    def paid(self, completion: Completion, cost: float | None, n: int) -> None:
        self.usage = self.usage + completion.usage
        self.attempts += n
        self.cost = None if cost is None or self.cost is None else self.cost + cost


class Escalate:
    def __init__(
        self, fallback: Fallback, recorder: Recorder, catalog: Catalog, repair_attempts: int
    ) -> None:
        self.fallback, self.recorder, self.catalog = fallback, recorder, catalog
        self.repair_attempts = repair_attempts

    async def run(
        self, leg: Leg, send: Send[tuple[Completion, float | None]], routing_call: CallFn
    ) -> Outcome:
        task = leg.task
        esc = leg.decision.escalation
        chain = list(esc.chain) if esc is not None else []
        answers: list[tuple[str, str]] = []
        paid: list[tuple[Completion, Any, Leg]] = []  # each answer judged: as the caller would get it
        out: Outcome | None = None
        notes: list[str] = []
        repairs = 0
        structured = task.output_schema is not None or leg.schema is not None
        while True:
            (completion, cost), leg, n = await self.fallback.run(leg, send, notes)
            if out is None:
                out = Outcome(completion, None, leg)
            out.paid(completion, cost, n)
            out.completion, out.leg = completion, leg
            try:
                # A tool-calling turn is not the final answer: the schema applies once the model answers.
                output = None
                if not completion.tool_calls:
                    output = validate(completion.text, model=task.output_schema, schema=leg.schema)
                    # An answer, not an echo of the prompt (or of our repair instruction), nor nothing.
                    check_answer(completion.text, output, leg.messages, structured=structured)
            except OutputInvalid as bad:
                cut = cut_off(completion)
                if cut:  # named in the ledger and in the error, so a cut reads as a cut, not as bad JSON
                    bad = OutputInvalid(f"{cut}; {bad.detail}")
                self.recorder.record(
                    leg.event("invalid_output", completion=completion, cost=cost, error=bad.detail, attempt=n)
                )
                if cut and repairs < self.repair_attempts:
                    # Quoting a cut answer back gets it written at full length again: ask afresh, briefly.
                    repairs += 1
                    limit = leg.request().max_output_tokens
                    leg = replace(leg, messages=brevity_messages(task.messages(), limit))
                    continue
                if repairs < self.repair_attempts:
                    repairs += 1
                    leg = replace(
                        leg,
                        messages=repair_messages(
                            leg.messages, completion.text, bad.detail, structured=structured
                        ),
                    )
                    continue
                up = self._next(leg.spec, chain)
                if up is None:
                    raise InvalidOutput(
                        f"{leg.spec.id} returned invalid output after {repairs} repair(s) and there is no "
                        f"tier above to escalate to: {bad.detail}"
                    ) from None
                notes.append(f"invalid output from {leg.spec.id}: {bad.detail}")
                leg = self._move(leg, up, f"escalated to {up.tier.value} after invalid output")
                leg = replace(leg, messages=task.messages())
                repairs = 0
                continue
            if esc is not None and not completion.tool_calls:
                answers.append((leg.spec.id, completion.text))
                paid.append((completion, output, leg))
            if esc is not None and chain and len(answers) < esc.votes and not completion.tool_calls:
                # One answer of a vote: the validator judges once every answer of it is in.
                up = self._next(leg.spec, chain)
                assert up is not None
                why = f"{esc.check.name}: answer {len(answers)} of {esc.votes} for a vote"
                self.recorder.record(leg.event("opinion", completion=completion, cost=cost, attempt=n))
                leg = replace(self._move(leg, up, f"{why}, asks {up.id}"), messages=task.messages())
                repairs = 0
                continue
            # The last model's answer stands: a validator there could only cost, never change it.
            if esc is not None and chain and not completion.tool_calls:
                confidence = await esc.check.confidence(task, answers, routing_call)
                out.confidence = confidence
                if confidence < esc.tau:
                    up = self._next(leg.spec, chain)
                    assert up is not None
                    why = f"{esc.check.name} confidence {confidence:.2f} < {esc.tau:.2f}"
                    self.recorder.record(
                        leg.event(
                            "rejected", completion=completion, cost=cost, attempt=n, error=why,
                            metadata={"confidence": round(confidence, 4)},
                        )
                    )  # fmt: skip
                    notes.append(f"{why} on {leg.spec.id}; escalated to {up.id}")
                    leg = replace(
                        self._move(leg, up, f"cascade: {why}, escalated to {up.id}"), messages=task.messages()
                    )
                    repairs = 0
                    continue
            meta: dict[str, Any] = {"escalations": len(notes)}
            if out.confidence is not None:
                meta["confidence"] = round(out.confidence, 4)
            pick = esc.pick if esc is not None and not completion.tool_calls else None
            chosen = pick(answers) if pick is not None else len(paid) - 1
            if 0 <= chosen < len(paid) - 1:
                # The vote's pick is an earlier answer: the call that closed the vote is recorded as it
                # was (its own output, and whose answer was returned); the caller gets the pick.
                completion_i, output, leg_i = paid[chosen]
                why = f"returns {leg_i.spec.id}'s answer, the vote's pick"
                leg = leg.on(leg.spec, replace(leg.decision, reason=f"{leg.decision.reason}; {why}"))
                meta["answer_from"] = leg_i.spec.id
                picked = replace(leg.decision, tier=leg_i.spec.tier, model=leg_i.spec.id)
                out.completion, out.leg = completion_i, leg_i.on(leg_i.spec, picked)
            self.recorder.record(leg.event("ok", completion=completion, cost=cost, attempt=n, metadata=meta))
            out.output, out.notes = output, notes
            return out

    def _next(self, spec: ModelSpec, chain: list[str]) -> ModelSpec | None:
        """The cascade's next model (consumed from ``chain``), else the tier above."""
        while chain:
            candidate = self.catalog.get(chain.pop(0))
            if candidate.id != spec.id:
                return candidate
        return self.fallback.above(spec)

    @staticmethod
    def _move(leg: Leg, up: ModelSpec, why: str) -> Leg:
        d = leg.decision
        return leg.on(up, replace(d, tier=up.tier, model=up.id, reason=f"{d.reason}; {why}"))
