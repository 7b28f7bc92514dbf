"""The dashboard's reads on SQLite and PostgreSQL, against figures computed by hand from a small ledger."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tierwise.core import Tier
from tierwise.errors import InputError, LedgerError
from tierwise.ledger import CallRecord, Ledger, RunRecord, StepRecord
from tierwise.ledger.dashboard import NO_KEY, DashboardQueries, bucket_for
from tierwise.models.spec import ModelSpec

NOW = datetime(2025, 3, 1, 12, 30, 30, tzinfo=UTC)
# The chaos config's prices: large 2.50 / 0.25 cached / 15.00 per 1M tokens; mini 0.75 / 0.075 / 4.50;
# nano 0.20 / 0.02 / 1.25.
LARGE = ModelSpec(
    id="chaos/large",
    provider="chaos",
    name="large-model",
    tier=Tier.LARGE,
    input_per_mtok=2.50,
    cached_input_per_mtok=0.25,
    output_per_mtok=15.00,
)


def call(run_id: str, ago: timedelta, **fields: Any) -> CallRecord:
    base: dict[str, Any] = {
        "task_kind": "classify",
        "tier": "nano",
        "model": "chaos/nano",
        "provider": "chaos",
        "reason": "rule: classify → nano",
        "status": "ok",
    }
    return CallRecord(run_id=run_id, created_at=NOW - ago, **(base | fields))


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture()
def ledger(any_url: str) -> Iterator[Ledger]:
    """Three runs: a keyed proxy run 20 min ago, an orchestration 10 min ago, another key 2 h ago."""
    with Ledger(any_url) as led:
        led.start_run(
            RunRecord(
                id="run-a",
                kind="proxy",
                label="classify this",
                status="ok",
                started_at=NOW - minutes(20),
                ended_at=NOW - minutes(19),
                metadata={"api_key": "team-a"},
            )
        )
        led.start_run(
            RunRecord(
                id="run-b",
                kind="orchestrate",
                label="fix the bug",
                status="partial",
                started_at=NOW - minutes(10),
            )
        )
        led.start_run(
            RunRecord(
                id="run-c",
                kind="proxy",
                status="ok",
                started_at=NOW - minutes(120),
                ended_at=NOW - minutes(119),
                metadata={"api_key": "team-b"},
            )
        )
        plan = '{"steps": [{"id": "s1", "depends_on": []}, {"id": "s2", "depends_on": ["s1"]}]}'
        led.record_step(StepRecord("run-b", "__plan__", "ok", tier="large", output=plan, created_at=NOW))
        led.record_step(
            StepRecord("run-b", "s1", "ok", tier="large", cost_usd=0.0175, metadata={"kind": "code_edit"})
        )
        for rec in [
            # nano: 1000 in, 100 out = 0.000325; at large 0.0025 + 0.0015 = 0.004
            call("run-a", minutes(20), input_tokens=1000, output_tokens=100, cost_usd=0.000325),
            # mini: 1000 uncached + 1000 cached in, 200 out = 0.001725; at large 0.00575
            call(
                "run-a",
                minutes(20) - timedelta(seconds=5),
                tier="mini",
                model="chaos/mini",
                task_kind="extract",
                input_tokens=2000,
                cached_input_tokens=1000,
                output_tokens=200,
                cost_usd=0.001725,
                metadata={"escalations": 1},
            ),
            # large: 1000 in, 1000 out = 0.0175, the same at large
            call(
                "run-b",
                minutes(10),
                tier="large",
                model="chaos/large",
                task_kind="code_edit",
                step_id="s1",
                input_tokens=1000,
                output_tokens=1000,
                cost_usd=0.0175,
                reason="rule: code_edit <b>hostile</b>",
            ),
            # an embedding counts at its own cost in the counterfactual
            call("run-b", minutes(10), operation="embed", input_tokens=500, cost_usd=0.0001),
            # mini (notional), in a step with no record yet: 100 in, 10 out = 0.00012; at large 0.0004
            call(
                "run-b",
                minutes(10) - timedelta(seconds=1),
                tier="mini",
                model="chaos/mini",
                step_id="s2",
                input_tokens=100,
                output_tokens=10,
                cost_usd=0.00012,
                notional=True,
            ),
            # outside the last hour: 1000 in = 0.0002; at large 0.0025
            call("run-c", minutes(120), input_tokens=1000, cost_usd=0.0002),
        ]:
            led.record_call(rec)
        led.flush()
        yield led


def test_totals_counterfactual_and_tier_shares(ledger: Ledger) -> None:
    q = DashboardQueries(ledger, LARGE)
    t = q.totals("1h", now=NOW)
    assert t["calls"] == 5
    assert t["cost_usd"] == pytest.approx(0.01977)
    assert t["counterfactual_usd"] == pytest.approx(0.02775)
    assert t["saving_usd"] == pytest.approx(0.00798)
    assert t["saving_share"] == pytest.approx(0.00798 / 0.02775, rel=1e-5)
    assert t["notional"] is True and t["notional_calls"] == 1
    assert t["large_model"] == "chaos/large"
    assert [(x["tier"], x["calls"], x["share"]) for x in t["tiers"]] == [
        ("large", 1, 0.2),
        ("mini", 2, 0.4),
        ("nano", 2, 0.4),
    ]
    assert {x["tier"]: x["cost_usd"] for x in t["tiers"]} == {
        "large": pytest.approx(0.0175),
        "mini": pytest.approx(0.001845),
        "nano": pytest.approx(0.000425),
    }
    day = q.totals("24h", now=NOW)
    assert (day["calls"], day["cost_usd"], day["counterfactual_usd"]) == (
        6,
        pytest.approx(0.01997),
        pytest.approx(0.03025),
    )
    assert q.totals("1h", now=NOW + timedelta(days=2))["calls"] == 0


def test_no_large_model_means_no_counterfactual(ledger: Ledger) -> None:
    t = DashboardQueries(ledger, None).totals("1h", now=NOW)
    assert t["cost_usd"] == pytest.approx(0.01977)
    assert t["counterfactual_usd"] is None and t["saving_usd"] is None


def test_spend_by_minute_and_tier(ledger: Ledger) -> None:
    s = DashboardQueries(ledger, LARGE).spend_series("1h", "tier", now=NOW)
    assert (s["bucket"], s["bucket_s"]) == ("minute", 60)
    assert len(s["points"]) == 61  # 11:30 to 12:30, empty minutes included
    assert s["keys"] == ["large", "mini", "nano"]  # costliest first
    busy = {datetime.fromtimestamp(p["t"], UTC).strftime("%H:%M"): p for p in s["points"] if p["calls"]}
    assert set(busy) == {"12:10", "12:20"}
    assert busy["12:10"]["cost"] == {"nano": pytest.approx(0.000325), "mini": pytest.approx(0.001725)}
    assert busy["12:10"]["counterfactual"] == pytest.approx(0.00975)
    assert busy["12:20"]["cost"] == {
        "large": pytest.approx(0.0175),
        "nano": pytest.approx(0.0001),
        "mini": pytest.approx(0.00012),
    }
    assert busy["12:20"]["total"] == pytest.approx(0.01772)
    assert busy["12:20"]["counterfactual"] == pytest.approx(0.018)
    assert busy["12:20"]["calls"] == 3
    assert sum(p["total"] for p in s["points"]) == pytest.approx(0.01977)


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("model", {"chaos/large": 0.0175, "chaos/mini": 0.001845, "chaos/nano": 0.000425}),
        ("kind", {"proxy": 0.00205, "orchestrate": 0.01772}),
        ("key", {"team-a": 0.00205, NO_KEY: 0.01772}),
    ],
)
def test_spend_by_model_system_and_key(ledger: Ledger, by: str, expected: dict[str, float]) -> None:
    s = DashboardQueries(ledger, LARGE).spend_series("1h", by, now=NOW)
    sums: dict[str, float] = {}
    for p in s["points"]:
        for k, v in p["cost"].items():
            sums[k] = sums.get(k, 0.0) + v
    assert sums == {k: pytest.approx(v) for k, v in expected.items()}


def test_a_day_in_hours_includes_the_older_key(ledger: Ledger) -> None:
    s = DashboardQueries(ledger, LARGE).spend_series("24h", "key", now=NOW)
    assert s["bucket"] == "hour" and len(s["points"]) == 25
    by_hour = {datetime.fromtimestamp(p["t"], UTC).hour: p for p in s["points"] if p["calls"]}
    assert by_hour[10]["cost"] == {"team-b": pytest.approx(0.0002)}
    assert by_hour[10]["counterfactual"] == pytest.approx(0.0025)
    assert by_hour[12]["cost"] == {"team-a": pytest.approx(0.00205), NO_KEY: pytest.approx(0.01772)}


def test_ranges_and_buckets(ledger: Ledger) -> None:
    q = DashboardQueries(ledger, LARGE)
    assert bucket_for(timedelta(hours=1)) == "minute"
    assert bucket_for(timedelta(hours=24)) == "hour"
    assert bucket_for(timedelta(days=7)) == "day"
    assert q.spend_series("7d", now=NOW)["bucket"] == "day"
    everything = q.spend_series("all", now=NOW)  # from the first call (2 h ago): minutes
    assert everything["bucket"] == "minute"
    assert sum(p["calls"] for p in everything["points"]) == 6
    with pytest.raises(InputError, match="unknown range"):
        q.window("2y")
    with pytest.raises(InputError, match="group spend by one of tier, model, kind, key"):
        q.spend_series("1h", "provider")


def test_recent_runs(ledger: Ledger) -> None:
    runs = DashboardQueries(ledger, LARGE).recent_runs(now=NOW)
    assert [r["id"] for r in runs] == ["run-b", "run-a", "run-c"]  # newest first
    b, a = runs[0], runs[1]
    assert (b["kind"], b["status"], b["calls"], b["key"], b["notional"]) == (
        "orchestrate",
        "partial",
        3,
        NO_KEY,
        True,
    )
    assert b["cost_usd"] == pytest.approx(0.01772)
    assert (a["label"], a["key"], a["calls"], a["duration_s"]) == ("classify this", "team-a", 2, 60.0)
    assert a["cost_usd"] == pytest.approx(0.00205)


def test_step_tree(ledger: Ledger) -> None:
    tree = DashboardQueries(ledger, LARGE).run_tree("run-b", now=NOW)
    assert tree["run"]["id"] == "run-b" and tree["run"]["calls"] == 3
    assert tree["run"]["cost_usd"] == pytest.approx(0.01772)
    steps = {s["step_id"]: s for s in tree["steps"]}
    assert list(steps) == ["__plan__", "s1", "s2"]
    s1, s2 = steps["s1"], steps["s2"]
    assert (s1["status"], s1["kind"], s1["tier"], s1["cost_usd"]) == ("ok", "code_edit", "large", 0.0175)
    assert [c["reason"] for c in s1["calls"]] == ["rule: code_edit <b>hostile</b>"]
    assert s1["calls"][0]["input_tokens"] == 1000 and s1["calls"][0]["output_tokens"] == 1000
    # s2 has a call but no record yet: shown as running, priced from its calls, after s1 as planned.
    assert (s2["status"], s2["depends_on"], s2["cost_usd"]) == ("running", ["s1"], pytest.approx(0.00012))
    assert [c["operation"] for c in tree["calls"]] == ["embed"]  # outside any step
    assert all("output" not in c and "prompt" not in c for s in tree["steps"] for c in s["calls"])
    with pytest.raises(LedgerError, match="no run with id"):
        DashboardQueries(ledger, LARGE).run_tree("nope")


def test_shadow_agreement_alarms_and_circuits(any_url: str) -> None:
    with Ledger(any_url) as led:
        led.start_run(RunRecord(id="r", kind="proxy", started_at=NOW - minutes(30)))

        def shadow(kind: str, tier: str, agree: bool) -> CallRecord:
            meta = {"shadow": True, "routed_tier": tier, "agree": agree, "agreement": 0.9 if agree else 0.2}
            return call(
                "r",
                minutes(5),
                operation="shadow",
                task_kind=kind,
                tier="large",
                model="chaos/large",
                cost_usd=0.001,
                metadata=meta,
            )

        # classify@nano: 6 checks, 4 agree: disagreement 1/3 > 25% with >= 5 checks → alarm
        for agree in (True, True, True, True, False, False):
            led.record_call(shadow("classify", "nano", agree))
        # extract@mini: 4 checks, 1 agrees: 75% disagreement but too few checks for an alarm
        for agree in (True, False, False, False):
            led.record_call(shadow("extract", "mini", agree))
        led.record_call(
            call(
                "r",
                minutes(5),
                operation="judge",
                task_kind="final_qa",
                tier="large",
                cost_usd=0.002,
                metadata={"shadow": True, "judge": True, "routed_kind": "classify", "routed_tier": "nano"},
            )
        )
        led.record_call(call("r", minutes(6)))  # a routed classify@nano call
        led.record_call(call("r", minutes(6), tier="mini", task_kind="extract", metadata={"escalations": 2}))
        led.record_call(call("r", minutes(6), tier="mini", task_kind="extract", metadata={"escalations": 0}))
        led.record_circuit("chaos/mini", "open", 5, "5 failures in a row: 503")
        led.record_circuit("chaos/nano", "closed", 0, "recovered")

        h = DashboardQueries(led, LARGE).routing_health("1h", now=NOW)
        groups = {(g["kind"], g["tier"]): g for g in h["groups"]}
        assert set(groups) == {("classify", "nano"), ("extract", "mini")}
        cls, ext = groups[("classify", "nano")], groups[("extract", "mini")]
        assert (cls["shadowed"], cls["agreed"], cls["agreement_rate"], cls["alarm"]) == (6, 4, 0.6667, True)
        assert cls["mean_agreement"] == pytest.approx((4 * 0.9 + 2 * 0.2) / 6, abs=1e-4)
        assert cls["shadow_cost_usd"] == pytest.approx(0.008)  # six checks and the judge
        assert cls["routed_calls"] == 1
        assert (ext["shadowed"], ext["agreement_rate"], ext["alarm"]) == (4, 0.25, False)
        assert (ext["routed_calls"], ext["escalation_rate"]) == (2, 0.5)
        assert h["alarms"] == ["classify@nano"]
        assert (h["shadowed"], h["agreement_rate"]) == (10, 0.5)
        assert [(c["model"], c["state"], c["failures"]) for c in h["circuits"]] == [("chaos/mini", "open", 5)]
