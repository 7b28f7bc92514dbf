"""The Ray executor (local Ray, 2 CPUs) on the chaos server with a PostgreSQL ledger: the same rows as the
local executor, one budget for the cluster, and a dead Ray address as one line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import chaos_config, tw
from tierwise.scale import BatchOptions, TaskSpec, run_file
from tierwise.session import Session
from tierwise.testing import ChaosServer

PG = os.environ.get("TIERWISE_TEST_POSTGRES_URL")
pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not PG, reason="TIERWISE_TEST_POSTGRES_URL unset")]
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _pg_url() -> str:
    assert PG is not None
    return PG.replace("postgresql://", "postgresql+psycopg://", 1) if "+" not in PG.split("://")[0] else PG


def _inputs(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "in.jsonl"
    p.write_text("".join(json.dumps({"id": f"r{i}", "text": f"row {i}"}) + "\n" for i in range(n)))
    return p


def _rows(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


async def test_ray_gives_the_local_rows(tmp_path: Path, chaos_server: ChaosServer, local_ray: None) -> None:
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, _pg_url()))
    inp = _inputs(tmp_path, 60)
    spec = TaskSpec("classify", labels=("spam", "ham"), tier="nano")
    async with Session(toml) as s:
        await run_file(s, inp, tmp_path / "local.jsonl", BatchOptions(spec))
        before = len(chaos_server.requests("/v1/chat/completions"))
        report = await run_file(s, inp, tmp_path / "ray.jsonl", BatchOptions(spec, executor="ray"))
        calls = (
            await s.ledger.acalls(report.run_id)
            if hasattr(s.ledger, "acalls")
            else s.ledger.calls(report.run_id)
        )
    assert len(chaos_server.requests("/v1/chat/completions")) - before == 60
    local, remote = _rows(tmp_path / "local.jsonl"), _rows(tmp_path / "ray.jsonl")
    keep = ("result", "tier", "model", "cost_usd", "error")
    assert {k: [v[f] for f in keep] for k, v in local.items()} == {
        k: [v[f] for f in keep] for k, v in remote.items()
    }
    # every worker's calls are in the driver's run, in the shared ledger
    assert len([c for c in calls if c.status == "ok"]) == 60


async def test_one_budget_for_the_cluster(tmp_path: Path, chaos_server: ChaosServer, local_ray: None) -> None:
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, _pg_url()))
    inp = _inputs(tmp_path, 200)
    spec = TaskSpec("ask", tier="nano")
    async with Session(toml) as s:
        report = await run_file(
            s, inp, tmp_path / "o.jsonl", BatchOptions(spec, executor="ray", budget_usd=0.001)
        )
    assert report.stopped and 0 < report.done < 200
    assert sum(r["cost_usd"] for r in _rows(tmp_path / "o.jsonl").values()) <= 0.001


def test_dead_ray_address_is_one_line(tmp_path: Path, chaos_server: ChaosServer) -> None:
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, _pg_url()))
    inp = _inputs(tmp_path, 3)
    r = tw("--config", str(toml), "batch", str(inp), "--task", "ask", "--out", str(tmp_path / "o.jsonl"),
           "--executor", "ray", "--ray-address", "127.0.0.1:1", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2 and "does not answer" in r.stderr and len(r.stderr.strip().splitlines()) == 1
