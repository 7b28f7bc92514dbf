"""Kind inference: e5 similarity, the static classifier, and the two combined, in one run.

    python -m bench.kind_inference

(a) ``e5``: today's inference, an e5-small embedding and the nearest kind description (+ verb bonus);
(b) ``static``: the fitted classifier on TF-IDF + static embedding + verb cues (kind_classifier.py);
(c) ``combined``: (b) when its probability is >= THRESHOLD, else (a) — what the runtime does.
Per-request latency p50/p99, sequential and from 2 threads; accuracy on the held-out labelled examples
(kind_examples.py, every fourth per kind); agreement with (a); the share of requests (c) hands to e5.
Then e5 against combined on a few hundred real prompts from ../shared/data (Banking77, MMLU, MBPP), which
have no kind labels: agreement only. First, the 5-fold cross-validation on the train split that chooses
L2, the temperature and the threshold, and whether the shipped constants still match it.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tierwise.core import TaskKind
from tierwise.routing import kind_classifier as kc
from tierwise.routing.features import get_embedder
from tierwise.routing.kind_examples import split
from tierwise.routing.kinds import KindGuess, KindInferrer, local_embed, verb_cues

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
L2_GRID = (0.3, 1.0, 3.0, 10.0)
N_PER_SOURCE = 150


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Infer = Callable[[str], KindGuess]


def _timed(fn: Infer, texts: list[str], threads: int) -> tuple[list[KindGuess], list[float]]:
    def one(text: str) -> tuple[KindGuess, float]:
        t0 = time.perf_counter_ns()
        guess = fn(text)
        return guess, (time.perf_counter_ns() - t0) / 1e6

    if threads == 1:
        out = [one(t) for t in texts]
    else:
        with ThreadPoolExecutor(threads) as pool:
            out = list(pool.map(one, texts))
    return [g for g, _ in out], [ms for _, ms in out]


def cross_validation(train_texts: list[str], train_kinds: list[TaskKind], e5: KindInferrer) -> None:
    static = get_embedder("static").embed
    e5_ok = np.array([e5.infer(t).kind is k for t, k in zip(train_texts, train_kinds, strict=True)])
    print(f"5-fold CV on the train split ({len(train_texts)} texts); e5 accuracy there {e5_ok.mean():.3f}")
    print(f"{'L2':>6} {'cv acc':>8} {'temp':>6} {'mean p':>7} {'thresh':>7} {'comb acc':>9} {'to e5':>6}")
    best: tuple[float, float, float, float] | None = None
    for l2 in L2_GRID:
        kinds, logits = kc.out_of_fold_logits(train_texts, train_kinds, static, verb_cues, l2=l2)
        y = np.array([kinds.index(k) for k in train_kinds])
        temp = kc.fit_temperature(logits, y)
        p = kc.softmax(logits * temp)
        ok = p.argmax(1) == y
        th = kc.choose_threshold(p.max(1), ok, e5_ok)
        comb = float(np.where(p.max(1) >= th, ok, e5_ok).mean())
        print(
            f"{l2:>6} {ok.mean():>8.3f} {temp:>6.2f} {p.max(1).mean():>7.2f} {th:>7.2f} {comb:>9.3f} "
            f"{(p.max(1) < th).mean():>6.2f}"
        )
        if best is None or comb > best[0]:
            best = (comb, l2, temp, th)
    assert best is not None
    _, l2, temp, th = best
    same = l2 == kc.L2 and abs(temp - kc.TEMPERATURE) < 0.01 and th == kc.THRESHOLD
    print(
        f"CV choice: L2={l2} temperature={temp:.2f} threshold={th:.2f}; shipped: L2={kc.L2} "
        f"temperature={kc.TEMPERATURE} threshold={kc.THRESHOLD} ({'match' if same else 'DIFFER: update'})\n"
    )


def real_prompts() -> list[str]:
    """Unlabelled prompts from ../shared/data: customer messages, exam questions, coding tasks."""
    out: list[str] = []
    with open(DATA / "intents" / "banking77" / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out += [r["text"] for r in rows[:: len(rows) // N_PER_SOURCE][:N_PER_SOURCE]]
    mmlu: list[str] = []
    for path in sorted((DATA / "outcomes" / "routellm" / "mmlu").glob("mmlu_*.csv"))[:6]:
        with open(path, newline="") as f:
            mmlu += [r["prompt"] for r in csv.DictReader(f)][:25]
    out += mmlu[:N_PER_SOURCE]
    with open(DATA / "outcomes" / "routerbench" / "mbpp_train.csv", newline="") as f:
        out += [r["prompt"] for r in csv.DictReader(f)][:100]
    return out


def main() -> None:
    train, test = split()
    train_texts, train_kinds = [t for t, _ in train], [k for _, k in train]
    texts, truth = [t for t, _ in test], [k for _, k in test]
    e5 = KindInferrer(local_embed)
    static = KindInferrer(None, kc.default_classifier)
    combined = KindInferrer(local_embed, kc.default_classifier)
    for inf in (e5, static, combined):
        inf.infer("warm up the model and the prototypes")
    cross_validation(train_texts, train_kinds, e5)

    paths = {"(a) e5": e5.infer, "(b) static classifier": static.infer, "(c) combined": combined.infer}
    reps = {"(a) e5": 2, "(b) static classifier": 20, "(c) combined": 4}
    guesses: dict[str, list[KindGuess]] = {}
    print(f"held-out set: {len(texts)} labelled requests, {len(set(truth))} kinds")
    print(
        f"{'path':<24} {'seq p50':>8} {'seq p99':>8} {'2thr p50':>9} {'2thr p99':>9} {'acc':>6} "
        f"{'agree(a)':>9} {'to e5':>6}"
    )
    lat50: dict[str, float] = {}
    for name, fn in paths.items():
        many = texts * reps[name]
        got, seq = _timed(fn, many, 1)
        _, par = _timed(fn, many, 2)
        guesses[name] = got[: len(texts)]
        acc = np.mean([g.kind is k for g, k in zip(guesses[name], truth, strict=True)])
        agree = np.mean([g.kind is a.kind for g, a in zip(guesses[name], guesses["(a) e5"], strict=True)])
        to_e5 = np.mean([g.via == "e5" for g in guesses[name]])
        lat50[name] = _pct(seq, 0.5)
        print(
            f"{name:<24} {_pct(seq, 0.5):>8.3f} {_pct(seq, 0.99):>8.3f} {_pct(par, 0.5):>9.3f} "
            f"{_pct(par, 0.99):>9.3f} {acc:>6.3f} {agree:>9.3f} {to_e5:>6.2f}"
        )
    accs = {
        n: float(np.mean([g.kind is k for g, k in zip(v, truth, strict=True)])) for n, v in guesses.items()
    }

    prompts = real_prompts()
    a = [e5.infer(p) for p in prompts]
    c, c_ms = _timed(combined.infer, prompts, 1)
    agree_real = float(np.mean([x.kind is y.kind for x, y in zip(a, c, strict=True)]))
    fb_real = float(np.mean([g.via == "e5" for g in c]))
    static_only = [g for g, x in zip(c, a, strict=True) if g.via == "static"]
    agree_static = float(
        np.mean([g.kind is x.kind for g, x in zip(c, a, strict=True) if g.via == "static"] or [0.0])
    )
    print(
        f"\nreal prompts ({len(prompts)}: Banking77, MMLU, MBPP): e5 vs combined agree {agree_real:.3f}; "
        f"combined hands {fb_real:.2f} to e5; where static decided ({len(static_only)}), it agrees with e5 "
        f"{agree_static:.3f}; combined p50 {_pct(c_ms, 0.5):.3f} ms, p99 {_pct(c_ms, 0.99):.3f} ms, "
        f"mean {statistics.fmean(c_ms):.3f} ms"
    )
    print(
        f"summary: combined kind inference p50 {lat50['(c) combined']:.2f} ms vs e5 {lat50['(a) e5']:.1f} ms "
        f"({lat50['(a) e5'] / lat50['(c) combined']:.0f}x faster); held-out accuracy combined "
        f"{accs['(c) combined']:.3f}, static {accs['(b) static classifier']:.3f}, e5 {accs['(a) e5']:.3f}"
    )


if __name__ == "__main__":
    main()
