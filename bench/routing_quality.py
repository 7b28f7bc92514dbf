"""Routing quality on held-out splits of the shared outcome data: ``python -m bench.routing_quality``.

RouterBench tasks (ARC-Challenge, MBPP, Winogrande): 5-fold cross-validation over prompts; every router is
fit on four folds and replayed on the fifth. RouteLLM MMLU: 5-fold cross-validation by subject, so each
prompt is routed by a model that never saw its subject. Nothing is tuned on the held-out folds: the
routers choose their own settings by cross-validation inside the training folds.

Options: ``--folds N`` (default 5), ``--embedder static|e5`` (default static), ``--quick`` (2 folds).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tierwise.core import Task
from tierwise.evaluation.baselines import CascadeReplay, LearnedReplay, ReplayRouter, TfidfKnnReplay
from tierwise.evaluation.datasets import load_outcomes, mmlu_files, routerbench_files
from tierwise.evaluation.metrics import apgr, cpt, oracle_strong_score, random_strong_score, routellm_curve
from tierwise.evaluation.replay import ReplayResult, replay

TARGET_APGR = 0.603
TARGET_ARC_PCT = 98.0


@dataclass
class TaskScores:
    """Per-router fold results on one task."""

    name: str
    folds: dict[str, list[ReplayResult]] = field(default_factory=dict)

    def mean(self, router: str, attr: str) -> float:
        return float(np.mean([getattr(r, attr) for r in self.folds[router]]))

    def budget_pct(self, router: str) -> float:
        return float(np.mean([r.budget_pct_of_best or 0.0 for r in self.folds[router]]))

    def wins(self, router: str) -> int:
        return sum(r.aiq > r.single_hull_aiq for r in self.folds[router])


def routers(embedder: str, seed: int) -> list[ReplayRouter]:
    return [LearnedReplay(embedder=embedder, seed=seed), CascadeReplay(seed=seed), TfidfKnnReplay()]


def run_routerbench(folds: int, embedder: str, seed: int) -> list[TaskScores]:
    out = []
    for path in routerbench_files():
        data = load_outcomes([path])
        scores = TaskScores(path.stem.removesuffix("_train"))
        for k, (train, test) in enumerate(data.folds(folds, seed=seed)):
            for router in routers(embedder, seed):
                result = replay(router, train, test, split=f"fold {k + 1}/{folds}")
                scores.folds.setdefault(router.name, []).append(result)
        out.append(scores)
        print(f"  {scores.name}: done ({data.n} prompts, {data.skipped} blank rows skipped)", flush=True)
    return out


@dataclass
class MmluScores:
    apgr: dict[str, float]
    apgr_folds: dict[str, list[float]]
    cpt50: dict[str, float | None]
    cpt80: dict[str, float | None]
    n: int
    subjects: int


def run_mmlu(folds: int, embedder: str, seed: int) -> MmluScores:
    """Each prompt's strong-preference score comes from a router fit without its subject (pooled CV)."""
    data = load_outcomes(mmlu_files())
    s, w = data.strong_weak()
    pooled: dict[str, np.ndarray] = {name: np.zeros(data.n) for name in ("learned", "knn-tfidf")}
    per_fold: dict[str, list[float]] = {name: [] for name in pooled}
    index = {p: i for i, p in enumerate(data.prompts)}
    for train, test in data.folds(folds, seed=seed, by_group=True):
        rows = np.array([index[p] for p in test.prompts])
        for router in (LearnedReplay(embedder=embedder, seed=seed), TfidfKnnReplay()):
            result = replay(router, train, test)
            per_fold[router.name].append(result.apgr or 0.0)
            score = router.strong_score(test)
            assert score is not None
            pooled[router.name][rows] = score
    pooled["random"] = random_strong_score(data.n, seed)
    pooled["oracle"] = oracle_strong_score(data)
    q = data.mean_quality()
    out = MmluScores({}, per_fold, {}, {}, data.n, len(set(data.groups)))
    for name, score in pooled.items():
        curve = routellm_curve(score, data.scores[:, w], data.scores[:, s])
        out.apgr[name] = apgr(curve, float(q[w]), float(q[s]))
        out.cpt50[name] = cpt(curve, 0.5, float(q[w]), float(q[s]))
        out.cpt80[name] = cpt(curve, 0.8, float(q[w]), float(q[s]))
    return out


def latency(embedder: str) -> dict[str, float]:
    """p50/p99 of the learned router's decision once the embedding is known, and embedding time per text."""
    from tierwise.core import Tier
    from tierwise.models.catalog import Catalog
    from tierwise.models.spec import ModelSpec
    from tierwise.routing.features import get_embedder
    from tierwise.routing.learned import LearnedModel, LearnedRouter

    data = load_outcomes([routerbench_files()[0]])
    model = LearnedModel.fit(data, embedder=embedder)
    catalog = Catalog(
        ModelSpec(id=f"bench/{m.replace('/', '-')}", provider="bench", name=m, tier=Tier.MINI)
        for m in model.models
    )
    router = LearnedRouter(model, catalog, {m: f"bench/{m.replace('/', '-')}" for m in model.models})
    vectors = model.features(data.prompts[:200])
    task = Task("x")
    timings = []
    for i in range(2000):
        t0 = time.perf_counter()
        router.decide(task, vectors[i % len(vectors)])
        timings.append(time.perf_counter() - t0)
    out = {
        "decide_p50_ms": 1e3 * float(np.percentile(timings, 50)),
        "decide_p99_ms": 1e3 * float(np.percentile(timings, 99)),
        "predictor": model.label,
    }  # type: ignore[dict-item]
    for name in ("static", "e5"):
        emb = get_embedder(name)
        texts = [p[-400:] for p in data.prompts[:20]]
        emb.embed(texts[:1])
        t0 = time.perf_counter()
        for t in texts:
            emb.embed([t])
        out[f"embed_{name}_ms"] = 1e3 * (time.perf_counter() - t0) / len(texts)
    return out


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}%"


def report(rb: Sequence[TaskScores], mmlu: MmluScores, lat: dict[str, float], seconds: float) -> str:
    lines = ["", "RouterBench (5-fold CV over prompts; AIQ = frontier area / costliest single model's cost)"]
    head = f"{'task':<14}{'single hull':>12}{'learned':>10}{'cascade':>10}{'knn-tfidf':>11}{'best':>10}"
    head += f"{'gain':>9}{'wins':>6}   quality at ≤25% of GPT-4's cost (% of GPT-4)"
    lines.append(head)
    lines.append("-" * len(head))
    all_above = True
    arc_pct = 0.0
    for t in rb:
        hull_aiq = t.mean("learned", "single_hull_aiq")
        aiqs = {name: t.mean(name, "aiq") for name in t.folds}
        best = max(("learned", "cascade"), key=lambda n: aiqs[n])
        above = aiqs[best] > hull_aiq
        all_above &= above
        pcts = "  ".join(f"{n} {t.budget_pct(n):.1f}" for n in ("learned", "cascade", "knn-tfidf"))
        lines.append(
            f"{t.name:<14}{hull_aiq:>12.4f}{aiqs['learned']:>10.4f}{aiqs['cascade']:>10.4f}{aiqs['knn-tfidf']:>11.4f}"
            f"{best:>10}{aiqs[best] - hull_aiq:>+9.4f}{t.wins(best):>4}/{len(t.folds[best])}   {pcts}"
        )
        if t.name.startswith("arc"):
            arc_pct = max(t.budget_pct("learned"), t.budget_pct("cascade"))
    lines += [
        "",
        f"RouteLLM MMLU ({mmlu.n} prompts, {mmlu.subjects} subjects, 5-fold CV by subject; pooled scores)",
    ]
    lines.append(f"{'router':<12}{'APGR':>8}{'fold mean':>11}{'CPT(50%)':>10}{'CPT(80%)':>10}")
    for name in ("learned", "knn-tfidf", "random", "oracle"):
        folds = mmlu.apgr_folds.get(name)
        fm = f"{np.mean(folds):.4f}" if folds else "-"
        lines.append(
            f"{name:<12}{mmlu.apgr[name]:>8.4f}{fm:>11}{_pct(mmlu.cpt50[name]):>10}{_pct(mmlu.cpt80[name]):>10}"
        )
    lines += [
        "",
        f"learned decision latency (embedding known): p50 {lat['decide_p50_ms']:.3f} ms, "
        f"p99 {lat['decide_p99_ms']:.3f} ms ({lat['predictor']}); embedding per text: "
        f"static {lat['embed_static_ms']:.2f} ms, e5 {lat['embed_e5_ms']:.1f} ms",
        "",
        (
            f"summary: frontier above the single-model hull on {'every' if all_above else 'NOT every'} "
            f"RouterBench task; ARC ≤25% cost {arc_pct:.1f}% of GPT-4 (target {TARGET_ARC_PCT:.0f}%); "
            f"MMLU APGR {mmlu.apgr['learned']:.3f} (target {TARGET_APGR}); decision p99 "
            f"{lat['decide_p99_ms']:.3f} ms; {seconds:.0f} s"
        ),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--embedder", default="static", choices=("static", "e5", "e5+static"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 folds, for a smoke run")
    args = parser.parse_args(argv)
    folds = 2 if args.quick else args.folds
    started = time.perf_counter()
    print(f"routing quality: {folds}-fold CV, {args.embedder} embeddings", flush=True)
    rb = run_routerbench(folds, args.embedder, args.seed)
    mmlu = run_mmlu(folds, args.embedder, args.seed)
    print("  mmlu: done", flush=True)
    lat = latency(args.embedder)
    print(report(rb, mmlu, lat, time.perf_counter() - started))


if __name__ == "__main__":
    main()
