"""A learned router, deployed through tierwise.toml, decides every call of an orchestration: the plan,
each step and the synthesis. Asserted from the ledger, not from the code that made the calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tierwise import Session
from tierwise.config import Config
from tierwise.errors import InputError
from tierwise.evaluation.datasets import data_dir, load_outcomes
from tierwise.ledger import Ledger
from tierwise.routing.learned import LearnedModel
from tierwise.routing.predictors import Predictor
from tierwise.testing import ChaosServer

from ..conftest import chaos_config
from .test_orchestrate import PLAN, VERDICT

TRAINED = {
    "mistralai/mistral-7b-chat": "chaos/nano",
    "zero-one-ai/Yi-34B-Chat": "chaos/mini",
    "gpt-4-1106-preview": "chaos/large",
}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TIERWISE_CACHE_DIR", str(tmp_path / "cache"))
    yield


@pytest.fixture()
def router_file(tmp_path: Path) -> Path:
    try:
        path = data_dir() / "outcomes" / "routerbench" / "arc_challenge_train.csv"
    except InputError:
        pytest.skip("the shared evaluation data is not available")
    data = load_outcomes([path]).subset(np.arange(200)).select_models(list(TRAINED))
    model = LearnedModel.fit(data, embedder="static", choices=[Predictor("knn", {"k": 15})], folds=3)
    return model.save(tmp_path / "router.npz")


async def test_learned_router_decides_every_orchestration_call(
    tmp_path: Path, chaos_server: ChaosServer, router_file: Path
) -> None:
    # Whatever tier the router picks, the fake models answer by the prompt, so the run completes.
    chaos_server.set_script(
        {
            "rules": [
                {"match": {"system_contains": "You are the planner"}, "reply": {"json": PLAN}},
                {"match": {"system_contains": "final answer"}, "reply": {"json": VERDICT}},
                {"match": {"has_response_format": True}, "reply": {"json": {"results": ["a", "b", "c"]}}},
                {"reply": "done"},
            ]
        }
    )
    mapping = ", ".join(f'"{k}" = "{v}"' for k, v in TRAINED.items())
    extra = (
        f'[routing]\nrouter = "learned"\nlearned_model = "{router_file}"\nlearned_mapping = {{ {mapping} }}\n'
    )
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db", extra))
    async with Session(toml) as s:
        result = await s.orchestrate("Summarize the TODOs")
    with Ledger(Config.load(toml).ledger.url) as ledger:
        calls = [c for c in ledger.calls(run_id=result.run_id) if c.operation == "chat"]
        steps = {st.step_id: st for st in ledger.steps(result.run_id)}
    assert {c.step_id for c in calls} >= {"__plan__", "find", "label", "judge", "__final__"}
    # Every call was decided by the learned router, and the ledger says which model it predicted best.
    assert all(c.reason.startswith("learned: predicted quality") for c in calls), [c.reason for c in calls]
    # Step records carry the tier of their calls' decisions, never the plan's hint.
    for sid in ("find", "label", "judge"):
        step_tiers = {c.tier for c in calls if c.step_id == sid}
        assert steps[sid].tier in step_tiers
    assert {r["tier"] for r in result.to_dict()["steps"]} <= {"nano", "mini", "large"}
