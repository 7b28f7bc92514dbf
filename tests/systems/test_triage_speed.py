"""Triage that finishes: bounded drafts, cut-off answers asked again briefly (not repaired at full length),
lines written as tickets finish, and a classifier fitted once and reused."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, chaos_config
from tierwise.config import Config
from tierwise.session import Session
from tierwise.systems.support_triage import (
    DRAFT_STEP,
    ESCALATE_STEP,
    read_examples,
    read_kb,
    read_tickets,
    triage,
)
from tierwise.systems.support_triage.pipeline import DRAFT_MAX_TOKENS, REPLY_CHARS
from tierwise.testing import ChaosServer

CATS = ["card_arrival", "exchange_rate", "change_pin", "country_support"]
PER_CLASS = 25
CUT = '{"draft": "aaaa'  # a reply cut off mid-string at the token limit


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small Banking77 examples CSV, three held-out tickets (one out of scope), a one-file KB."""
    root = tmp_path_factory.mktemp("triage_speed")
    with (SHARED_DATA / "intents" / "banking77" / "train.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by = {c: [r["text"] for r in rows if r["category"] == c] for c in CATS}
    with (root / "examples.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        w.writerows((t, c) for c in CATS for t in by[c][:PER_CLASS])
    with (root / "tickets.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        w.writerow([by["card_arrival"][PER_CLASS + 1], "card_arrival"])
        w.writerow(["What is the boiling point of water in kelvin?", "oos"])
        w.writerow([by["exchange_rate"][PER_CLASS + 2], "exchange_rate"])
    kb = root / "kb"
    kb.mkdir()
    (kb / "cards.md").write_text("# Cards\n\nNew cards arrive within 5 working days.\n")
    (root / "cache").mkdir()
    return {"root": root, "examples": root / "examples.csv", "tickets": root / "tickets.csv", "kb": kb}


@pytest.fixture()
def cache(data: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIERWISE_CACHE_DIR", str(data["root"] / "cache"))
    return data["root"] / "cache"


def _toml(tmp_path: Path, server: ChaosServer) -> Path:
    toml = tmp_path / "tierwise.toml"
    # A patient client: the streaming test holds one reply back for seconds on purpose.
    text = chaos_config(server.base_url, f"sqlite:///{tmp_path}/ledger.db").replace(
        "timeout_s = 2.0", "timeout_s = 30.0"
    )
    toml.write_text(text)
    return toml


async def test_cut_off_draft_is_asked_again_briefly_not_repaired_at_full_length(
    tmp_path: Path, chaos_server: ChaosServer, data: dict[str, Path], cache: Path
) -> None:
    toml = _toml(tmp_path, chaos_server)
    note = {"json": {"action": "escalate", "reply": "Customer asks when the card arrives; check delivery."}}
    chaos_server.set_script(
        {
            "rules": [
                {
                    "match": {"system_contains": "customer-support agent"},
                    "reply": {"text": CUT, "finish_reason": "length"},
                },
                {"match": {"system_contains": "senior support agent"}, "reply": note},
            ]
        }
    )
    tickets = read_tickets(data["tickets"])[:1]  # in scope, not critical: drafted on mini
    async with Session(Config.load(toml)) as s, s.run("system:support-triage", "cut") as scope:
        report = await triage(
            scope, tickets, examples=read_examples(data["examples"]), kb=read_kb(data["kb"])
        )
        calls = await scope.calls()
    chats = chaos_server.requests("/v1/chat/completions")
    drafts = [r["body"] for r in chats if "customer-support agent" in r["body"]["messages"][0]["content"]]
    # Bounded: the draft's token budget and the schema's string limit travel with every request.
    assert {b["max_tokens"] for b in drafts} == {DRAFT_MAX_TOKENS}
    schema = drafts[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["reply"]["maxLength"] == REPLY_CHARS
    # Each tier asks once, then once again afresh and briefly: the cut answer is never quoted back.
    assert [b["model"] for b in drafts] == ["mini-model", "mini-model", "large-model", "large-model"]
    for first, again in zip(drafts[::2], drafts[1::2], strict=True):
        assert len(again["messages"]) == len(first["messages"]) + 1
        assert again["messages"][:-1] == first["messages"]
        last = again["messages"][-1]["content"]
        assert "cut off at the output limit" in last and str(DRAFT_MAX_TOKENS) in last
        assert all(
            CUT not in m["content"] and "failed validation" not in m["content"] for m in again["messages"]
        )
    # The ledger says why: a cut, not merely bad JSON.
    invalid = [c for c in calls if c.step_id == DRAFT_STEP and c.status == "invalid_output"]
    assert len(invalid) == 4
    assert all(c.error and c.error.startswith("cut off at the output limit") for c in invalid)
    # The ticket still ends somewhere useful: escalated with the senior note, and the reason given.
    (item,) = report.items
    assert (item.action, item.tier_path, item.draft) == (
        "escalate",
        ["nano", "mini", "large"],
        note["json"]["reply"],
    )
    escalation = next(
        r["body"] for r in chats if "senior support agent" in r["body"]["messages"][0]["content"]
    )
    assert "the draft was cut off at its output limit" in escalation["messages"][-1]["content"]
    assert [c.status for c in calls if c.step_id == ESCALATE_STEP and c.operation == "chat"] == ["ok"]


def _popen(toml: Path, data: dict[str, Path], out: Path, cache: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TIERWISE_CONFIG")}
    env["TIERWISE_CACHE_DIR"] = str(cache)
    args = ["--input", str(data["tickets"]), "--examples", str(data["examples"]), "--kb", str(data["kb"])]
    return subprocess.Popen(
        [sys.executable, "-m", "tierwise", "--config", str(toml), "run", "support-triage", *args,
         "--out", str(out), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_each_ticket_line_is_written_as_it_finishes(
    tmp_path: Path, chaos_server: ChaosServer, data: dict[str, Path], cache: Path
) -> None:
    toml = _toml(tmp_path, chaos_server)
    hold_s = 4.0  # the out-of-scope ticket's escalation (the 2nd ticket) answers this late
    chaos_server.set_script(
        {
            "rules": [
                {
                    "match": {"model": "large-model"},
                    "reply": {"json": {"action": "escalate", "reply": "Human: off-topic."}},
                    "latency_s": hold_s,
                },
                {"reply": {"json": {"action": "reply", "reply": "Cards arrive in 5 days."}}},
            ]
        }
    )
    out = tmp_path / "out.jsonl"
    proc = _popen(toml, data, out, cache)
    try:
        seen: list[tuple[float, int, bool]] = []  # (time, lines in the file, process still running)
        while proc.poll() is None:
            n = len(out.read_text().splitlines()) if out.is_file() else 0
            seen.append((time.monotonic(), n, proc.poll() is None))
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    # The first ticket's line was in the file, alone, while the run was still waiting on the second.
    early = [t for t, n, running in seen if n == 1 and running]
    assert early and seen[-1][0] - early[0] >= hold_s / 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["intent"] for x in lines] == ["card_arrival", "out_of_scope", "exchange_rate"]
    assert json.loads(stdout)["n"] == 3
    assert "ticket 1/3: card_arrival · reply · nano+mini" in stderr  # a console line per ticket


async def test_a_fit_is_reused_and_a_changed_example_set_embeds_only_its_new_rows(
    tmp_path: Path, chaos_server: ChaosServer, data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fitted once; a later run (a new session and ledger, the examples file copied elsewhere) loads the
    fit, and says so and how long loading took. A different set of examples (another held-out split:
    a few rows fewer) is a new fit, but only its unseen rows go to e5, the slow part of a fit."""
    monkeypatch.setenv("TIERWISE_CACHE_DIR", str(tmp_path / "cache"))  # empty: the first run fits
    chaos_server.set_script({"rules": [{"reply": {"json": {"action": "reply", "reply": "ok, done."}}}]})
    tickets = read_tickets(data["tickets"])[:1]
    copied = tmp_path / "elsewhere" / "examples.csv"
    copied.parent.mkdir()
    copied.write_bytes(data["examples"].read_bytes())
    changed = tmp_path / "changed.csv"
    rows = data["examples"].read_text().splitlines(keepends=True)
    changed.write_text("".join(rows[:10] + rows[13:]))  # three examples held out instead
    runs = []
    for n, examples in enumerate((data["examples"], copied, changed)):
        (tmp_path / str(n)).mkdir()
        toml = _toml(tmp_path / str(n), chaos_server)
        async with Session(Config.load(toml)) as s, s.run("system:support-triage", "fit") as scope:
            report = await triage(scope, tickets, examples=read_examples(examples))
            embeds = [c for c in await scope.calls() if c.operation == "embed"]
        runs.append((report.nano, sum(c.input_tokens for c in embeds)))
    (first, first_tokens), (second, second_tokens), (third, third_tokens) = runs
    assert [r[0]["classifier_cached"] for r in runs] == [False, True, False]
    assert second["fit_s"] < first["fit_s"] and second_tokens < first_tokens / 10
    assert third_tokens < first_tokens / 10  # no example was new: e5 saw only the ticket
    assert (third["vectors_embedded"], third["vectors_reused"]) == (0, len(rows) - 1 - 3)
