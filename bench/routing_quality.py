"""Routing quality on held-out folds of the shared outcome data: ``python -m bench.routing_quality``.

Every router (policy, learned, cascade, cascade+ = cascade routing, kNN/TF-IDF, random, oracle) on every
task: RouterBench ARC-C, MBPP and Winogrande by 5-fold cross-validation over prompts; RouteLLM MMLU by
5-fold cross-validation *by subject*, so each prompt is routed by a router that never saw its subject.
Nothing is tuned on held-out folds: routers choose their settings by cross-validation inside the training
folds. The oracle reads the held-out labels and is a ceiling, not a router.

Columns: AIQ (RouterBench: hull area / costliest model's cost) and the single-model hull's AIQ; APGR and
CPT(50%)/CPT(80%) (two models: RouteLLM's 10 quantile thresholds, pooled over folds for MMLU; N models:
the hull's PGR between the cheapest and the best model, CPT in % of the best model's cost); quality at
<= 25% of the best model's cost in % of its quality; fit and replay seconds per fold.

Options: ``--folds N`` (5), ``--features SPEC`` (static+lex2), ``--quick`` (2 folds), ``--tasks a,b``.
``--transfer``: instead, train on one task and route another it never saw (MMLU → ARC-C on the two MMLU
models; RouterBench tasks → each other): AIQ / APGR on the unseen task, calibration (ECE in task vs on the
unseen one) and the ``learned_min_confidence`` fallback to the policy (the large model) at several floors.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from tierwise.evaluation.baselines import (
    CascadeReplay,
    CascadeRoutingReplay,
    LearnedReplay,
    OracleReplay,
    PolicyReplay,
    RandomReplay,
    ReplayRouter,
    TfidfKnnReplay,
)
from tierwise.evaluation.datasets import load_outcomes, mmlu_files, routerbench_files, with_strong_share
from tierwise.evaluation.metrics import apgr, cpt, gap_metrics, routellm_curve, single_points
from tierwise.evaluation.replay import ReplayResult, replay
from tierwise.evaluation.transfer import TransferResult, transfer
from tierwise.routing.features import DEFAULT_FEATURES
from tierwise.routing.outcomes import Outcomes

PUBLISHED_MMLU_APGR = 0.603  # RouteLLM's best router on MMLU
TARGET_APGR = 0.65
TARGET_ARC_PCT = 98.0
ORDER = ("policy", "learned", "cascade", "cascade+", "knn-tfidf", "random", "oracle")
ROUTERS = ("learned", "cascade", "cascade+")  # the project's routers; the rest are references
NEEDS_RESPONSES = {"cascade", "cascade+"}  # they replay recorded answers; MMLU has none


@dataclass
class Row:
    """One router on one task, over the held-out folds."""

    router: str
    results: list[ReplayResult] = field(default_factory=list)
    pooled_score: np.ndarray | None = None  # two models: per-prompt strong preference, out of fold
    apgr: float | None = None
    cpt50: float | None = None
    cpt80: float | None = None

    def mean(self, attr: str) -> float:
        return float(np.mean([getattr(r, attr) for r in self.results]))

    def budget_pct(self) -> float:
        return float(np.mean([r.budget_pct_of_best or 0.0 for r in self.results]))


@dataclass
class TaskResult:
    name: str
    n: int
    split: str
    rows: dict[str, Row] = field(default_factory=dict)


def make_routers(features: str, seed: int) -> list[Callable[[], ReplayRouter]]:
    return [
        PolicyReplay,
        lambda: LearnedReplay(embedder=features, seed=seed),
        lambda: CascadeReplay(seed=seed),
        lambda: CascadeRoutingReplay(embedder=features, seed=seed),
        TfidfKnnReplay,
        lambda: RandomReplay(seed=seed),
        OracleReplay,
    ]


def run_task(name: str, data: Outcomes, folds: int, features: str, seed: int) -> TaskResult:
    by_group = data.cost_unit == "strong_share"
    split = f"{folds}-fold CV by subject" if by_group else f"{folds}-fold CV over prompts"
    out = TaskResult(name, data.n, split)
    index = {p: i for i, p in enumerate(data.prompts)}
    for k, (train, test) in enumerate(data.folds(folds, seed=seed, by_group=by_group)):
        rows = np.array([index[p] for p in test.prompts])
        for make in make_routers(features, seed):
            router = make()
            if router.name in NEEDS_RESPONSES and not data.has_responses:
                continue
            result = replay(router, train, test, split=f"fold {k + 1}/{folds}")
            row = out.rows.setdefault(router.name, Row(router.name))
            row.results.append(result)
            score = router.strong_score(test) if len(data.models) == 2 else None
            if score is not None:
                if row.pooled_score is None:
                    row.pooled_score = np.zeros(data.n)
                row.pooled_score[rows] = score
        print(f"  {name}: fold {k + 1}/{folds} done", flush=True)
    _gap(out, data)
    return out


def _gap(task: TaskResult, data: Outcomes) -> None:
    """APGR / CPT per router: pooled over folds for two models, the hull's gap metrics for N."""
    if len(data.models) == 2:
        s, w = data.strong_weak()
        q = data.mean_quality()
        for row in task.rows.values():
            if row.pooled_score is not None:
                curve = routellm_curve(row.pooled_score, data.scores[:, w], data.scores[:, s])
            else:  # policy: mixing the two models, the straight line between them
                curve = [p for p in single_points(data)]
            row.apgr = apgr(curve, float(q[w]), float(q[s]))
            row.cpt50 = cpt(curve, 0.5, float(q[w]), float(q[s]))
            row.cpt80 = cpt(curve, 0.8, float(q[w]), float(q[s]))
        return
    for row in task.rows.values():
        vals = []
        for r in row.results:
            cheap = min(r.singles, key=lambda p: (p.cost, -p.quality))
            vals.append(gap_metrics(r.points, cheap, r.best_single))
        row.apgr = float(np.mean([v[0] for v in vals]))
        row.cpt50 = _mean_or_none([v[1] for v in vals])
        row.cpt80 = _mean_or_none([v[2] for v in vals])


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))  # type: ignore[arg-type]


def _f(v: float | None, fmt: str = ".4f", suffix: str = "") -> str:
    return "n/a" if v is None else f"{v:{fmt}}{suffix}"


def table(tasks: Sequence[TaskResult]) -> list[str]:
    head = (
        f"{'task':<14}{'router':<11}{'AIQ':>8}{'hull AIQ':>10}{'APGR':>8}{'CPT50':>8}{'CPT80':>8}"
        f"{'q@≤25%':>9}{'fit s':>8}{'replay s':>10}"
    )
    lines = [head, "-" * len(head)]
    for t in tasks:
        for name in ORDER:
            row = t.rows.get(name)
            if row is None:
                continue
            replay_s = row.mean("seconds") - row.mean("fit_seconds")
            lines.append(
                f"{t.name:<14}{name:<11}{row.mean('aiq'):>8.4f}{row.mean('single_hull_aiq'):>10.4f}"
                f"{_f(row.apgr):>8}{_f(row.cpt50, '.1f', '%'):>8}{_f(row.cpt80, '.1f', '%'):>8}"
                f"{row.budget_pct():>8.1f}%{row.mean('fit_seconds'):>8.2f}{replay_s:>10.2f}"
            )
        lines.append("")
    return lines


def summary(tasks: Sequence[TaskResult], seconds: float) -> str:
    rb = [t for t in tasks if t.name != "mmlu"]
    above = [
        t.name
        for t in rb
        if max(t.rows[n].mean("aiq") for n in ROUTERS if n in t.rows)
        > t.rows["learned"].mean("single_hull_aiq")
    ]
    parts = [f"above the hull on {len(above)}/{len(rb)} RouterBench tasks"]
    arc = next((t for t in rb if t.name.startswith("arc")), None)
    if arc is not None:
        pct = max(arc.rows[n].budget_pct() for n in ROUTERS if n in arc.rows)
        parts.append(
            f"ARC-C at ≤25% of GPT-4's cost {pct:.1f}% of its quality (target {TARGET_ARC_PCT:.0f}%)"
        )
    mmlu = next((t for t in tasks if t.name == "mmlu"), None)
    if mmlu is not None:
        parts.append(
            f"MMLU held-out-subject APGR {_f(mmlu.rows['learned'].apgr, '.3f')} "
            f"(RouteLLM {PUBLISHED_MMLU_APGR}, target > {TARGET_APGR})"
        )
    return f"summary: {'; '.join(parts)}; {seconds:.0f} s"


MMLU_AS_ROUTERBENCH = {"mistralai/Mixtral-8x7B-Instruct-v0.1": "mistralai/mixtral-8x7b-chat"}


def run_transfer(features: str, seed: int) -> list[TransferResult]:
    bench = {p.stem.removesuffix("_train"): load_outcomes([p]) for p in routerbench_files()}
    mmlu = load_outcomes(mmlu_files())
    mmlu = replace(mmlu, models=tuple(MMLU_AS_ROUTERBENCH.get(m, m) for m in mmlu.models))
    pairs: list[tuple[str, Outcomes, str, Outcomes]] = []
    for name, data in bench.items():
        arc_two = with_strong_share(data.select_models(mmlu.models), mmlu.meta["strong"])
        if name == "arc_challenge":
            pairs.append(("mmlu", mmlu, f"{name} (2 models)", arc_two))
    for a, da in bench.items():
        for b, db in bench.items():
            if a != b:
                pairs.append((a, da, b, db))
    out = []
    for source, train, target, test in pairs:
        out.append(transfer(train, test, source=source, target=target, embedder=features, seed=seed))
        print(f"  {source} -> {target} done", flush=True)
    return out


def transfer_table(results: Sequence[TransferResult]) -> list[str]:
    lines = [
        f"{'source -> target':40} {'AIQ':>7} {'hull':>7} {'APGR':>7} {'ECE in':>7} {'ECE out':>7}",
        "-" * 80,
    ]
    for r in results:
        gap = "n/a" if r.apgr is None else f"{r.apgr:.4f}"
        lines.append(
            f"{r.source + ' -> ' + r.target:40} {r.aiq:7.4f} {r.hull_aiq:7.4f} {gap:>7} "
            f"{r.ece_in_task:7.3f} {r.ece:7.3f}"
        )
    lines += ["", "fallback to the policy (large) below a predicted quality floor, at the default λ:"]
    lines.append(
        f"{'source -> target':40} {'floor':>5} {'to policy':>9} {'quality':>8} {'cost':>10} {'vs λ':>7}"
    )
    lines.append("-" * 92)
    for r in results:
        lines.append(
            f"{r.source + ' -> ' + r.target:40} {'large':>5} {'100%':>9} {r.large.quality:8.4f} "
            f"{r.large.cost:10.4g}"
        )
        for f in r.fallbacks:
            floor = "none" if f.floor is None else f"{f.floor:.1f}"
            lines.append(f"{'':40} {floor:>5} {f.share:9.1%} {f.quality:8.4f} {f.cost:10.4g} {f.gain:+7.4f}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--features", default=DEFAULT_FEATURES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 folds, for a smoke run")
    parser.add_argument(
        "--tasks", default="", help="comma-separated subset: arc_challenge,mbpp,winogrande,mmlu"
    )
    parser.add_argument("--transfer", action="store_true", help="train on one task, route another")
    args = parser.parse_args(argv)
    if args.transfer:
        started = time.perf_counter()
        print(f"routing transfer: features {args.features}", flush=True)
        results = run_transfer(args.features, args.seed)
        print("\n".join(transfer_table(results)))
        above = sum(r.aiq > r.hull_aiq for r in results)
        worst = max(r.ece for r in results)
        print(
            f"summary: above the hull on {above}/{len(results)} unseen tasks; ECE on unseen tasks up to "
            f"{worst:.3f}; {time.perf_counter() - started:.0f} s"
        )
        return
    folds = 2 if args.quick else args.folds
    wanted = {t for t in args.tasks.split(",") if t}
    started = time.perf_counter()
    print(f"routing quality: {folds}-fold CV, features {args.features}", flush=True)
    sources = [(p.stem.removesuffix("_train"), [p]) for p in routerbench_files()]
    sources.append(("mmlu", mmlu_files()))
    tasks = []
    for name, paths in sources:
        if wanted and name not in wanted:
            continue
        data = load_outcomes(paths)
        tasks.append(run_task(name, data, folds, args.features, args.seed))
    print()
    print("\n".join(table(tasks)))
    print(summary(tasks, time.perf_counter() - started))


if __name__ == "__main__":
    main()
