"""The cascade: replay pays for every model it calls and reads only what it paid for; live escalation."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from pydantic import BaseModel

from tierwise.core import Task, Tier
from tierwise.errors import InputError
from tierwise.evaluation.datasets import data_dir, load_outcomes
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.routing.cascade import (
    AgreementValidator,
    CascadePlan,
    CascadeRouter,
    SchemaValidator,
    normalize_answer,
)
from tierwise.routing.cascade_fit import CascadeFamily, answer_codes, fit_cascades
from tierwise.routing.outcomes import Outcomes


@pytest.fixture(scope="module")
def split() -> tuple[Outcomes, Outcomes]:
    try:
        path = data_dir() / "outcomes" / "routerbench" / "winogrande_train.csv"
    except InputError:
        pytest.skip("the shared evaluation data is not available")
    data = load_outcomes([path]).subset(np.arange(400))
    return data.subset(np.arange(250)), data.subset(np.arange(250, 400))


@pytest.fixture(scope="module")
def family(split: tuple[Outcomes, Outcomes]) -> CascadeFamily:
    return fit_cascades(split[0], max_cheap=2)


def test_normalize_answer() -> None:
    assert normalize_answer("['D\\n']") == "D"
    assert normalize_answer("A) Ian") == "A"
    assert normalize_answer("The answer is (C).") == "C"
    assert normalize_answer("I do not know") == "i do not know"
    assert normalize_answer(None) == ""


def test_replay_pays_for_every_model_it_calls(
    family: CascadeFamily, split: tuple[Outcomes, Outcomes]
) -> None:
    test = split[1]
    plans = family.replay(test)
    assert any(p.paid.sum(axis=1).max() > 1 for p in plans)  # some configurations escalate
    for cfg, plan in zip(family.plans, plans, strict=True):
        chain = [test.model_index(m) for m in cfg.chain]
        calls = plan.paid[:, chain]
        # Cheapest first: the models paid for on a row are a prefix of the chain, and include the answer.
        assert (np.diff(calls.astype(int), axis=1) <= 0).all()
        assert plan.paid[np.arange(test.n), plan.answer].all()
        assert plan.paid[:, [j for j in range(len(test.models)) if j not in chain]].sum() == 0
        assert plan.cost(test) == pytest.approx((test.costs * plan.paid).sum(axis=1).mean())


def test_replay_reads_only_paid_responses_and_no_scores(
    family: CascadeFamily, split: tuple[Outcomes, Outcomes]
) -> None:
    test = split[1]
    before = family.replay(test)
    rng = np.random.default_rng(0)
    for plan_before, cfg in zip(before, family.plans, strict=True):
        assert test.responses is not None
        # Garble every response the cascade did not pay for, and every score: nothing may change.
        garbled = tuple(
            tuple(
                text if plan_before.paid[i, j] else f"garbage {rng.integers(1e9)}"
                for j, text in enumerate(row)
            )
            for i, row in enumerate(test.responses)
        )
        tampered = replace(test, responses=garbled, scores=rng.random(test.scores.shape))
        after = family.replay(tampered, answer_codes(tampered))[family.plans.index(cfg)]
        assert (after.answer == plan_before.answer).all() and (after.paid == plan_before.paid).all()


def test_cascade_needs_recorded_responses(split: tuple[Outcomes, Outcomes]) -> None:
    with pytest.raises(InputError, match="recorded responses"):
        fit_cascades(replace(split[0], responses=None))


def test_plan_json_round_trip(family: CascadeFamily) -> None:
    plan = family.plans[-1]
    assert CascadePlan.from_json(plan.to_json()) == plan
    assert family.at_budget(plan.expected_cost).expected_quality >= plan.expected_quality - 1e-12


def _catalog() -> Catalog:
    return Catalog(
        [
            ModelSpec(id="t/nano", provider="t", name="nano", tier=Tier.NANO),
            ModelSpec(id="t/mini", provider="t", name="mini", tier=Tier.MINI),
            ModelSpec(id="t/large", provider="t", name="large", tier=Tier.LARGE),
        ]
    )


class Recorder:
    """A CallFn that answers from a table and records every model it was asked to call."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.called: list[str] = []

    async def __call__(self, task: Task) -> str:
        assert task.model is not None
        self.called.append(task.model)
        return self.answers[task.model]


async def test_cascade_names_the_cheapest_model_and_hands_the_runtime_its_chain() -> None:
    chain = ["t/nano", "t/mini", "t/large"]
    router = CascadeRouter(_catalog(), chain, AgreementValidator(), tau=0.5)
    first = await router.route(Task("pick A or B"), Recorder({}))
    assert first.model == "t/nano" and "escalates to t/mini → t/large" in first.reason
    assert first.escalation is not None and first.escalation.chain == ("t/mini", "t/large")
    assert first.escalation.tau == 0.5 and first.escalation.check.name == "agreement"
    # Agreement along the chain: nano and mini disagree, the large answer sides with mini.
    check, call = first.escalation.check, Recorder({})
    assert await check.confidence(Task("x"), [("t/nano", "B")], call) == 0.0
    assert await check.confidence(Task("x"), [("t/nano", "B"), ("t/mini", "A")], call) == 0.0
    answers = [("t/nano", "B"), ("t/mini", "A"), ("t/large", "A) yes")]
    assert await check.confidence(Task("x"), answers, call) == 0.5


async def test_schema_validator_judges_structured_output_only() -> None:
    class Out(BaseModel):
        label: str

    v, call = SchemaValidator(), Recorder({})
    task = Task("classify", output_schema=Out)
    assert await v.confidence(task, [("t/nano", "not json")], call) == 0.0
    assert await v.confidence(task, [("t/mini", json.dumps({"label": "spam"}))], call) == 1.0
    assert await v.confidence(Task("free text"), [("t/nano", "anything")], call) == 1.0  # no objection
