"""Cascade routing (``cascade+``) on live calls: the router file, the catalog mapping, and decisions made
through the real runtime against the loopback chaos server equal to ``decide()`` in replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tierwise import Session
from tierwise.config import Config
from tierwise.core import Capability, Task, TaskKind, Tier
from tierwise.errors import ConfigError, InputError
from tierwise.evaluation.datasets import data_dir, load_outcomes
from tierwise.ledger import Ledger
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.routing.cascade_live import CascadeRoutingRouter
from tierwise.routing.cascade_model import CascadeRoutingModel
from tierwise.routing.cascade_routing import RoutingPlan, decide
from tierwise.routing.factory import build_router
from tierwise.routing.features import layout
from tierwise.routing.learned import LearnedModel
from tierwise.routing.outcomes import Outcomes
from tierwise.routing.predictors import Predictor
from tierwise.testing import ChaosServer

from ..conftest import chaos_config

# Two cheap models of near-equal quality on ARC-C (so the prompt router ranks them differently from one
# prompt to the next, and the vote's pick is sometimes the first, cheaper one) and GPT-4.
ARC_MODELS = ("claude-instant-v1", "gpt-3.5-turbo-1106", "gpt-4-1106-preview")
CHAOS = {"nano": "nano-model", "mini": "mini-model", "large": "large-model"}


def _toml(tmp_path: Path, server: ChaosServer, router_file: Path, mapping: dict[str, str]) -> Path:
    pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in mapping.items())
    extra = (
        f'[routing]\nrouter = "cascade+"\nlearned_model = {json.dumps(str(router_file))}\n'
        f"learned_mapping = {{ {pairs} }}\n"
    )
    path = tmp_path / "tierwise.toml"
    path.write_text(chaos_config(server.base_url, f"sqlite:///{tmp_path}/ledger.db", extra))
    return path


def _calls(toml: Path, run_id: str) -> list:
    with Ledger(Config.load(toml).ledger.url) as ledger:
        return [c for c in ledger.calls(run_id=run_id) if c.operation == "chat"]


# ---- a hand-made model: q̂ the same on every prompt, risk models that read agreement only ---------------
def _constant_learned(q: tuple[float, float, float]) -> LearnedModel:
    """A learned model over models a, b, c that predicts ``q`` for every prompt."""
    view = layout("static+lex2")
    lo, hi = view["lex2"]
    logit = np.log(np.array(q) / (1 - np.array(q)))
    pred = Predictor("logreg", {"C": 1.0}, {"logreg": "lex2"}, view)
    pred.arrays = {
        "prior": np.array(q),
        "mean": np.zeros(hi - lo, dtype=np.float32),
        "scale": np.ones(hi - lo, dtype=np.float32),
        "coef": np.zeros((3, hi - lo)),
        "intercept": logit,
    }
    return LearnedModel(("a", "b", "c"), np.array([1.0, 2.0, 20.0]), "usd", "static+lex2", (pred,))


def _risk(width: int, intercept: float, distinct: float = 0.0) -> dict[str, np.ndarray]:
    """Risk model arrays over ``agree`` features (patterns..., vote share, distinct answers / k)."""
    coef = np.zeros(width)
    coef[-1] = distinct
    return {
        "mean": np.zeros(width),
        "scale": np.ones(width),
        "coef": coef,
        "intercept": np.array(intercept),
    }


def _hand_model(plan: RoutingPlan, q: tuple[float, float, float] = (0.8, 0.7, 0.95)) -> CascadeRoutingModel:
    lo, hi = layout("static+lex2")["lex2"]
    return CascadeRoutingModel(_constant_learned(q), plan, (lo, hi), best_quality=0.95, n_train=10)


# Two cheap answers: right when they agree (distinct = 0.5: logit +5), wrong when not (distinct = 1: −5).
ESCALATE_ON_DISAGREEMENT = _risk(5, 15.0, -20.0)
NANO_MINI_LARGE = {"a": "chaos/nano", "b": "chaos/mini", "c": "chaos/large"}


def _replies(nano: str, mini: str, large: str = "C") -> dict:
    return {
        "rules": [
            {"match": {"model": CHAOS["nano"]}, "reply": nano},
            {"match": {"model": CHAOS["mini"]}, "reply": mini},
            {"match": {"model": CHAOS["large"]}, "reply": large},
        ]
    }


async def test_the_vote_returns_the_cheaper_answer_when_it_is_predicted_better(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    # q̂(a) = 0.8 > q̂(b) = 0.7: when a and b disagree, a's answer wins the vote though b answered last.
    plan = RoutingPlan((0, 1), None, "", "", np.inf)
    path = _hand_model(plan).save(tmp_path / "router.npz")
    toml = _toml(tmp_path, chaos_server, path, NANO_MINI_LARGE)
    chaos_server.set_script(_replies("A", "B"))
    async with Session(toml) as s:
        result = await s.call("Which gas is denser? A) air B) helium", kind="classify")
    assert (result.model, result.text, result.tier) == ("chaos/nano", "A", "nano")
    assert "cascade+: a vote of chaos/nano (q̂ 0.80), chaos/mini (q̂ 0.70)" in result.decision.reason
    assert "returns chaos/nano's answer, the vote's pick" in result.decision.reason
    calls = _calls(toml, result.run_id)
    assert [(c.status, c.model) for c in calls] == [("opinion", "chaos/nano"), ("ok", "chaos/mini")]
    assert calls[1].metadata["answer_from"] == "chaos/nano" and calls[1].output == "B"
    assert result.escalations == ()  # an opinion is not an escalation
    # Both answers are paid for.
    assert result.cost_usd == pytest.approx(sum(c.cost_usd for c in calls))


async def test_disagreement_escalates_and_agreement_is_accepted(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    plan = RoutingPlan((0, 1), 2, "agree", "risk", 0.5, ESCALATE_ON_DISAGREEMENT)
    path = _hand_model(plan).save(tmp_path / "router.npz")
    toml = _toml(tmp_path, chaos_server, path, NANO_MINI_LARGE)
    chaos_server.set_script(_replies("A", "B", "C"))
    async with Session(toml) as s:
        decision = await s.route("Which gas is denser? A) air B) helium", kind="classify")
        escalated = await s.call("Which gas is denser? A) air B) helium", kind="classify")
        chaos_server.set_script(_replies("B", "B) helium"))
        accepted = await s.call("Which gas is denser? A) air B) helium", kind="classify")
    assert decision.router == "cascade+" and decision.model == "chaos/nano" and decision.routing_calls == 0
    assert decision.escalation is not None and decision.escalation.chain == ("chaos/mini", "chaos/large")
    assert "escalates to chaos/large when the vote's risk exceeds 0.500" in decision.reason
    assert (escalated.model, escalated.text) == ("chaos/large", "C")
    rows = [(c.status, c.model) for c in _calls(toml, escalated.run_id)]
    assert rows == [("opinion", "chaos/nano"), ("rejected", "chaos/mini"), ("ok", "chaos/large")]
    rejected = _calls(toml, escalated.run_id)[1]
    assert "cascade+ confidence 0.01 < 0.50" in (rejected.error or "")
    assert any("escalated to chaos/large" in e for e in escalated.escalations)
    # Agreement (same letter, different words): accepted, and the answer is a's (predicted best).
    assert (accepted.model, accepted.text) == ("chaos/nano", "B")
    rows = [(c.status, c.model) for c in _calls(toml, accepted.run_id)]
    assert rows == [("opinion", "chaos/nano"), ("ok", "chaos/mini")]
    assert _calls(toml, accepted.run_id)[1].metadata["confidence"] == pytest.approx(0.9933, abs=1e-4)


async def test_a_trusted_cheap_model_answers_alone(tmp_path: Path, chaos_server: ChaosServer) -> None:
    # q̂(b) = 0.9 >= alone_at: b alone, judged by the lone-answer risk model (confident: no escalation).
    plan = RoutingPlan(
        (0, 1), 2, "agree", "risk", 0.5, ESCALATE_ON_DISAGREEMENT, alone_at=0.85, risk_alone=_risk(3, 5.0)
    )
    path = _hand_model(plan, q=(0.8, 0.9, 0.95)).save(tmp_path / "router.npz")
    toml = _toml(tmp_path, chaos_server, path, NANO_MINI_LARGE)
    chaos_server.set_script(_replies("A", "B"))
    async with Session(toml) as s:
        result = await s.call("Which gas is denser? A) air B) helium", kind="classify")
    assert (result.model, result.text) == ("chaos/mini", "B")
    assert "q̂ 0.90 for chaos/mini ≥ 0.85: its answer alone" in result.decision.reason
    assert [(c.status, c.model) for c in _calls(toml, result.run_id)] == [("ok", "chaos/mini")]


async def test_pinned_tasks_and_tasks_a_model_cannot_take_go_to_the_policy(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    plan = RoutingPlan((0, 1), 2, "agree", "risk", 0.5, ESCALATE_ON_DISAGREEMENT)
    path = _hand_model(plan).save(tmp_path / "router.npz")
    toml = _toml(tmp_path, chaos_server, path, NANO_MINI_LARGE)
    async with Session(toml) as s:
        pinned = await s.route("Which gas is denser?", kind="classify", tier="large")
        tools = await s.route(
            Task("Which gas is denser?", kind=TaskKind.CLASSIFY, requires=frozenset({Capability.TOOLS}))
        )
    assert pinned.model == "chaos/large" and pinned.escalation is None
    assert pinned.reason.startswith("cascade+: the caller pinned the task; policy:")
    assert tools.escalation is None and "chaos/nano lacks tools" in tools.reason


# ---- the router file and the catalog mapping ------------------------------------------------------------
def _catalog(*ids: str) -> Catalog:
    tiers = [Tier.NANO, Tier.MINI, Tier.LARGE]
    return Catalog(
        ModelSpec(id=m, provider="test", name=m.split("/")[1], tier=tiers[i % 3]) for i, m in enumerate(ids)
    )


def test_router_file_round_trip(tmp_path: Path) -> None:
    plan = RoutingPlan(
        (0, 1), 2, "agree", "gain", -0.25, ESCALATE_ON_DISAGREEMENT, 0.5, 0.9, 0.85, _risk(3, 5.0)
    )
    model = _hand_model(plan)
    path = model.save(tmp_path / "router")  # the suffix is added
    assert path.name == "router.npz"
    back = CascadeRoutingModel.load(path)
    p = back.plan
    assert (p.cheap, p.escalate, p.features, p.score) == ((0, 1), 2, "agree", "gain")
    assert (p.threshold, p.alone_at, p.expected_cost, p.expected_quality) == (-0.25, 0.85, 0.5, 0.9)
    for got, want in ((p.risk, plan.risk), (p.risk_alone, plan.risk_alone)):
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    assert (back.lex_cols, back.best_quality, back.n_train, back.models) == (
        model.lex_cols,
        0.95,
        10,
        ("a", "b", "c"),
    )
    text = "Which gas is denser? A) air B) helium"
    np.testing.assert_array_equal(back.predict(text)[0], model.predict(text)[0])
    # Never escalating and never alone: ±inf survive the (strict JSON) header.
    never = _hand_model(RoutingPlan((0, 1), None, "", "", np.inf))
    again = CascadeRoutingModel.load(never.save(tmp_path / "never.npz")).plan
    assert again.threshold == np.inf and again.alone_at == np.inf and again.escalate is None


def test_bad_router_files_are_one_line_errors(tmp_path: Path) -> None:
    def error(fn, path: Path) -> str:  # type: ignore[no-untyped-def]
        with pytest.raises(ConfigError) as info:
            fn(path)
        message = str(info.value)
        assert "\n" not in message and "Traceback" not in message
        return message

    good = _hand_model(RoutingPlan((0, 1), 2, "agree", "risk", 0.5, ESCALATE_ON_DISAGREEMENT))
    load = CascadeRoutingModel.load
    assert "cascade+ router file not found" in error(load, tmp_path / "nope.npz")
    assert "`tierwise eval train --router cascade+`" in error(load, tmp_path / "nope.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a router")
    assert "is not a tierwise router file" in error(load, garbage)
    learned = _constant_learned((0.8, 0.7, 0.95)).save(tmp_path / "learned.npz")
    assert 'is a learned router file, not a cascade+ one: set routing.router = "learned"' in error(
        load, learned
    )
    plus = good.save(tmp_path / "plus.npz")
    assert "is a cascade+ router file, not a learned one" in error(LearnedModel.load, plus)
    # A future (or foreign) version, and a damaged file: the risk model reads the wrong features.
    with np.load(plus) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    future = tmp_path / "future.npz"
    np.savez(future, meta=np.array(json.dumps({**meta, "format": "tierwise-cascade-routing/9"})), **arrays)
    assert "format 'tierwise-cascade-routing/9', expected 'tierwise-cascade-routing/1'" in error(load, future)
    damaged = tmp_path / "damaged.npz"
    np.savez(damaged, meta=np.array(json.dumps(meta)), **{**arrays, "risk_coef": np.zeros(7)})
    assert "damaged cascade+ router file (the risk model's arrays do not have the 5 features" in error(
        load, damaged
    )
    gone = tmp_path / "gone.npz"
    np.savez(gone, meta=np.array(json.dumps({k: v for k, v in meta.items() if k != "plan"})), **arrays)
    assert "damaged cascade+ router file ('plan')" in error(load, gone)
    # Through the config: the key, the file and the fix, on one line.
    config = Config.from_dict({"routing": {"router": "cascade+", "learned_model": str(learned)}})
    message = error(lambda _: build_router(config), learned)
    assert "routing.learned_model = " in message and "is a learned router file" in message
    with pytest.raises(ConfigError, match=r"routing.router = 'cascade\+' needs routing.learned_model"):
        Config.from_dict({"routing": {"router": "cascade+"}})


def test_every_model_the_plan_buys_needs_a_catalog_model(tmp_path: Path) -> None:
    model = _hand_model(RoutingPlan((0, 1), 2, "agree", "risk", 0.5, ESCALATE_ON_DISAGREEMENT))
    catalog = _catalog("t/a", "t/b", "t/c")
    router = CascadeRoutingRouter(model, catalog, {"a": "t/a", "b": "t/b", "c": "t/c"})
    assert sorted(s.id for s in router.specs.values()) == ["t/a", "t/b", "t/c"]
    with pytest.raises(ConfigError) as info:
        CascadeRoutingRouter(model, catalog, {"a": "t/a", "b": "t/b"})
    assert str(info.value).startswith("cascade+ router: its model 'c' has no catalog model: map it")
    with pytest.raises(ConfigError, match=r"'c' has no catalog model \('t/zzz' is not one\)"):
        CascadeRoutingRouter(model, catalog, {"a": "t/a", "b": "t/b", "c": "t/zzz"})
    with pytest.raises(ConfigError, match="need distinct catalog models"):
        CascadeRoutingRouter(model, catalog, {"a": "t/a", "b": "t/a", "c": "t/c"})
    with pytest.raises(ConfigError, match="names models it was not trained on: \\['x'\\]"):
        CascadeRoutingRouter(model, catalog, {"x": "t/a"})
    # A column the plan never buys needs no catalog model.
    cheap_only = _hand_model(RoutingPlan((0, 1), None, "", "", np.inf))
    assert CascadeRoutingRouter(cheap_only, catalog, {"a": "t/a", "b": "t/b"}).specs


# ---- live decisions equal replay, on recorded ARC-C outcomes --------------------------------------------
@pytest.fixture(scope="module")
def arc() -> tuple[Outcomes, Outcomes]:
    try:
        path = data_dir() / "outcomes" / "routerbench" / "arc_challenge_train.csv"
    except InputError:
        pytest.skip("the shared evaluation data is not available")
    data = load_outcomes([path]).select_models(list(ARC_MODELS))
    test = data.subset(np.arange(300, 360))
    # Rows whose three recorded answers are short and non-empty (a live call of an empty answer would be
    # repaired, which replay cannot know).
    keep = [
        i
        for i, row in enumerate(test.responses or ())
        if all(r and 0 < len(r.strip("[]'\" ")) <= 40 for r in row)
    ]
    return data.subset(np.arange(300)), test.subset(np.array(keep))


async def test_live_decisions_equal_replay(
    arc: tuple[Outcomes, Outcomes], tmp_path: Path, chaos_server: ChaosServer
) -> None:
    train, test = arc
    model = CascadeRoutingModel.fit(train, seed=0, target_cost=0.001)
    plan = model.plan
    assert len(plan.cheap) == 2 and plan.escalate == 2 and np.isfinite(plan.alone_at), model.label
    path = model.save(tmp_path / "cascade.npz")
    loaded = CascadeRoutingModel.load(path)
    replayed = loaded.replay(test)
    answer, escalated, alone = decide(loaded.plan, loaded.family().signals(test))
    np.testing.assert_array_equal(answer, replayed.answer)
    # The fixture exercises every branch: lone answers, escalations, accepted votes whose pick is the
    # first (not the latest) answer bought.
    first, best = plan.cheap
    assert alone.any() and escalated.any() and (~alone & ~escalated).any()
    assert ((answer == first) & ~alone).any()

    catalog_ids = dict(zip(ARC_MODELS, ("chaos/nano", "chaos/mini", "chaos/large"), strict=True))
    tails = [p[-300:] for p in test.prompts]
    assert len(set(tails)) == len(tails)
    rules = []
    for i, tail in enumerate(tails):
        for j, name in enumerate(ARC_MODELS):
            chaos = CHAOS[catalog_ids[name].split("/")[1]]
            reply = (test.responses or ())[i][j]
            rules.append({"match": {"model": chaos, "user_contains": tail}, "reply": reply})
    chaos_server.set_script({"rules": rules})
    toml = _toml(tmp_path, chaos_server, path, catalog_ids)
    results = []
    async with Session(toml) as s:
        for prompt in test.prompts:
            results.append(await s.call(prompt, kind="classify"))
    for i, result in enumerate(results):
        # Same models bought, in the plan's order (the vote, then the escalation), as replay paid for.
        cols = ([best] if alone[i] else list(plan.cheap)) + ([plan.escalate] if escalated[i] else [])
        assert sorted(cols) == list(np.flatnonzero(replayed.paid[i])), i
        bought = [c.model for c in _calls(toml, result.run_id)]
        assert bought == [catalog_ids[ARC_MODELS[j]] for j in cols], (i, bought, cols)
        # Same returned answer: the vote's pick, the lone answer, or the escalation's.
        assert result.model == catalog_ids[ARC_MODELS[int(answer[i])]], i
        assert result.text == (test.responses or ())[i][int(answer[i])], i
