"""One end-to-end orchestration on the embedded default: no config file, no key, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierwise import Session
from tierwise.orchestration import ExecLimits, Options


async def test_orchestrate_on_the_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    toml = tmp_path / "tierwise.toml"
    toml.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path}/ledger.db"\n')
    monkeypatch.setenv("TIERWISE_CONFIG", str(toml))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "todo.md").write_text("- fix login\n- write docs\n")
    async with Session() as s:
        # one tool turn and no QA re-runs keep the tiny in-process model's share of the test short
        opts = Options(exec_limits=ExecLimits(max_turns=1), max_reruns=0)
        result = await s.orchestrate("List the TODO items in the workspace", workspace=ws, options=opts)
    d = result.to_dict()
    assert isinstance(d["answer"], str)
    assert d["steps"] and all(st["status"] == "ok" for st in d["steps"])
    assert d["notional"] and d["total_cost_usd"] > 0
    assert d["all_large_counterfactual_usd"] >= d["total_cost_usd"]
    assert set(d["cost_per_step"]) >= {"__plan__", "__final__"}
    assert (tmp_path / "ledger.db").exists() and not (tmp_path / ".tierwise").exists()
