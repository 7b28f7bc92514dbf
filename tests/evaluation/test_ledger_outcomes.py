"""Outcomes from the ledger: shadow checks (and judge scores) become training rows for the learned router."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import chaos_config
from tierwise import Session
from tierwise.config import Config
from tierwise.errors import InputError
from tierwise.evaluation.ledger_outcomes import outcomes_from_calls, prompt_text
from tierwise.ledger import Ledger
from tierwise.ledger.records import CallRecord
from tierwise.routing.learned import LearnedModel
from tierwise.testing import ChaosServer


def _shadow(
    text: str | None,
    *,
    agree: bool = True,
    routed: str = "m/nano",
    cost: float | None = 0.01,
    routed_cost: float | None = 0.001,
    **extra: object,
) -> CallRecord:
    prompt = (
        None
        if text is None
        else json.dumps([{"role": "system", "content": "sys"}, {"role": "user", "content": text}])
    )
    meta: dict[str, object] = {
        "shadow": True,
        "routed_model": routed,
        "routed_tier": "nano",
        "agree": agree,
        **extra,
    }
    if routed_cost is not None:
        meta["routed_cost_usd"] = routed_cost
    return CallRecord(
        run_id="r",
        task_kind="classify",
        tier="large",
        model="m/large",
        provider="p",
        reason="shadow",
        status="ok",
        operation="shadow",
        cost_usd=cost,
        prompt=prompt,
        metadata=meta,
    )


def test_prompt_text_is_the_task_text() -> None:
    stored = json.dumps([{"role": "system", "content": "rules"}, {"role": "user", "content": "card lost"}])
    assert prompt_text(stored) == "card lost"
    assert prompt_text(None) is None
    assert prompt_text("plain") == "plain"


def test_agreement_rows_skips_are_counted_and_the_models_are_chosen(tmp_path: Path) -> None:
    calls = [_shadow(f"q{i}", agree=i % 3 != 0) for i in range(12)]
    calls += [_shadow(None), _shadow("no price", cost=None), _shadow("no routed cost", routed_cost=None)]
    calls += [_shadow("too few mini rows", routed="m/mini")]
    calls += [
        CallRecord(
            run_id="r",
            task_kind="classify",
            tier="nano",
            model="m/nano",
            provider="p",
            reason="policy",
            status="ok",
        )
    ]  # a plain call: not an outcome
    # Written to and read back from a real ledger, as `eval train --from-ledger` does.
    with Ledger(f"sqlite:///{tmp_path}/l.db", store_prompts=True) as ledger:
        for c in calls:
            ledger.record_call(c)
        ledger.flush()
        stored = ledger.calls(operation="shadow")
    stored.append(replace(_shadow("another large model", routed="m/mini"), model="m/other"))
    assert len(stored) == 17
    got = outcomes_from_calls(stored)
    data = got.outcomes
    assert data.models == ("m/nano", "m/large") and data.meta["strong"] == "m/large"
    assert data.n == 12 and data.prompts[0] == "q0"
    assert got.score_source == "agreement"
    assert data.scores[:, 0].tolist() == [0.0 if i % 3 == 0 else 1.0 for i in range(12)]
    assert (data.scores[:, 1] == 1.0).all()
    assert np.allclose(data.costs, [[0.001, 0.01]] * 12)
    assert data.observed is None  # two models: every row scores both
    assert got.skipped == {
        "prompt not stored": 1,
        "cost unknown": 2,
        "other large model": 1,
        "fewer than 5 rows for the routed model": 1,
    }
    assert data.skipped == 5


def test_judge_scores_win_and_can_be_required() -> None:
    calls = [_shadow(f"q{i}", routed_score=0.3, large_score=0.8) for i in range(10)]
    calls += [_shadow(f"a{i}") for i in range(4)]
    auto = outcomes_from_calls(calls)
    assert auto.score_source == "judge+agreement" and auto.outcomes.n == 14
    assert auto.outcomes.scores[0].tolist() == [0.3, 0.8]
    judged = outcomes_from_calls(calls, score="judge")
    assert judged.outcomes.n == 10 and judged.skipped == {"no judge score": 4}
    assert judged.score_source == "judge"
    plain = outcomes_from_calls(calls, score="agreement")
    assert plain.outcomes.scores[0].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("calls", "kwargs", "message"),
    [
        ([], {}, r"no shadow checks.*\[shadow\] share"),
        ([_shadow(None)] * 12, {}, r"0 usable.*12 prompt not stored.*store_prompts = true"),
        ([_shadow("q")] * 3, {}, r"0 usable.*3 fewer than 5 rows.*at least 10.*record more shadow checks"),
        ([_shadow("q")] * 12, {"models": ["a"]}, r"pass at least two models"),
        ([_shadow("q")] * 12, {"score": "vibes"}, r"'vibes' is not one of"),
        ([_shadow("q")] * 12, {"models": ["m/mini", "m/large"]}, r"0 usable.*m/large and m/mini"),
    ],
)
def test_unusable_ledgers_say_why_and_what_to_do(calls: list[CallRecord], kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        outcomes_from_calls(calls, **kwargs)


SHADOW = "[shadow]\nshare = 1.0\nbudget_usd = 0.5\nseed = 3\njudge = {judge}\n"


def _cli(toml: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierwise", "--config", str(toml), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_train_from_ledger_end_to_end(tmp_path: Path, chaos_server: ChaosServer) -> None:
    """Routed nano calls shadowed by large; nano is wrong on card-theft tickets. The router trained from
    the ledger sends theft tickets to large and keeps password tickets on nano."""
    toml = tmp_path / "tierwise.toml"
    config = chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db", SHADOW.format(judge="false"))
    toml.write_text(config.replace("[ledger]\n", "[ledger]\nstore_prompts = true\n", 1))
    chaos_server.set_script(
        {
            "rules": [
                {"match": {"model": "nano-model"}, "reply": {"text": "low"}},
                {"match": {"model": "large-model", "user_contains": "stolen"}, "reply": {"text": "critical"}},
                {"match": {"model": "large-model"}, "reply": {"text": "low"}},
            ]
        }
    )
    stolen = [
        f"my card was stolen at the {p}"
        for p in ("station", "mall", "airport", "bar", "park", "gym", "office", "market", "beach", "club")
    ]
    reset = [
        f"how do I reset my password on the {p}"
        for p in ("app", "website", "phone", "tablet", "laptop", "portal", "kiosk", "watch", "tv", "car")
    ]
    async with Session(toml) as s, s.run("traffic") as run:
        for text in stolen + reset:
            await s.call(text, kind="classify", run=run)

    bad = _cli(toml, "eval", "train", "--from-ledger", "--score", "vibes", "--out", str(tmp_path / "x.npz"))
    assert bad.returncode == 2 and "--score must be auto, judge or agreement" in bad.stderr

    out = _cli(
        toml,
        "eval",
        "train",
        "--from-ledger",
        "--embedder",
        "static",
        "--out",
        str(tmp_path / "router.npz"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["n_train"] == 20 and summary["models"] == ["chaos/nano", "chaos/large"]
    assert summary["ledger"] == {"rows": 20, "score_source": "agreement", "skipped": {}}

    model = LearnedModel.load(tmp_path / "router.npz")
    q = model.predict(model.features(["my card was stolen on the bus", "reset my password on the app"]))
    assert q[0, 0] < q[1, 0]  # nano's predicted agreement is lower on theft

    # Deployed on the same catalog: theft goes to large, password resets stay on nano.
    deployed = tmp_path / "deployed.toml"
    deployed.write_text(
        toml.read_text().replace("[shadow]\nshare = 1.0", "[shadow]\nshare = 0.0")
        + f'\n[routing]\nrouter = "learned"\nlearned_model = "{tmp_path / "router.npz"}"\n'
    )
    # The catalog's other models were not trained on: the policy router keeps them, with a warning.
    with pytest.warns(UserWarning, match="not trained on"):
        async with Session(deployed) as s:
            theft = await s.route("my card was stolen at the bus stop", kind="classify")
            reset_d = await s.route("how do I reset my password on the browser", kind="classify")
    assert theft.model == "chaos/large" and reset_d.model == "chaos/nano", (theft.reason, reset_d.reason)


async def test_shadow_judge_scores_both_answers_whatever_the_order(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    toml = tmp_path / "tierwise.toml"
    config = chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db", SHADOW.format(judge="true"))
    toml.write_text(config.replace("[ledger]\n", "[ledger]\nstore_prompts = true\n", 1))
    chaos_server.set_script(
        {
            "rules": [
                # The judge sees the routed answer ("low") first or second; its scores follow the answer.
                {
                    "match": {"user_contains": "<answer_a>\nlow"},
                    "reply": {"text": '{"score_a": 2, "score_b": 9}'},
                },
                {
                    "match": {"user_contains": "<answer_a>\ncritical"},
                    "reply": {"text": '{"score_a": 9, "score_b": 2}'},
                },
                {"match": {"model": "nano-model"}, "reply": {"text": "low"}},
                {"match": {"model": "large-model"}, "reply": {"text": "critical"}},
            ]
        }
    )
    async with Session(toml) as s:
        for i in range(6):
            await s.call(f"card stolen {i}", kind="classify")
    with Ledger(Config.load(toml).ledger.url) as ledger:
        calls = ledger.calls()
    shadows = [c for c in calls if c.operation == "shadow"]
    judges = [c for c in calls if c.operation == "judge"]
    assert len(shadows) == 6 and len(judges) == 6
    assert {(c.metadata["routed_score"], c.metadata["large_score"]) for c in shadows} == {(0.2, 0.9)}
    assert all(c.metadata["routed_cost_usd"] > 0 for c in shadows)
    got = outcomes_from_calls(calls, min_rows=6)
    assert got.score_source == "judge"
    assert got.outcomes.scores.tolist() == [[0.2, 0.9]] * 6

    out = _cli(toml, "eval", "shadow-report", "--json")
    report = json.loads(out.stdout)
    # The judge's calls are shadow spend too.
    shadow_cost = sum(c.cost_usd or 0 for c in shadows + judges)
    assert report["shadow_cost_usd"] == pytest.approx(shadow_cost, rel=1e-6)


async def test_an_invalid_judge_verdict_is_recorded_and_gives_no_score(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    toml = tmp_path / "tierwise.toml"
    config = chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db", SHADOW.format(judge="true"))
    toml.write_text(config)
    chaos_server.set_script(
        {
            "rules": [
                {"match": {"user_contains": "<answer_a>"}, "reply": {"text": '{"score_a": 42}'}},
                {"reply": {"text": "low"}},
            ]
        }
    )
    async with Session(toml) as s:
        await s.call("card stolen", kind="classify")
    with Ledger(Config.load(toml).ledger.url) as ledger:
        calls = ledger.calls()
    judge = next(c for c in calls if c.operation == "judge")
    shadow = next(c for c in calls if c.operation == "shadow")
    assert judge.status == "invalid_output" and "score" in (judge.error or "")
    assert "routed_score" not in shadow.metadata and shadow.metadata["agree"] is True
