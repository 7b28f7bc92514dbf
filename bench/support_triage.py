"""Accuracy and messages/second of support triage's embedded nano tier on held-out splits.

Banking77: a stratified 80/20 split of train.csv (seed 0). CLINC150: fit on `train`, test on `val` with
`oos_val` as out-of-scope (the classifier sees in-scope examples only). Embeddings go through a real
run's Scope (metered e5 calls into a temporary ledger), as in `tierwise run support-triage`.

    python -m bench.support_triage [--per-class N] [--no-cache]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from tierwise import Session
from tierwise.config import Config
from tierwise.systems.support_triage.intents import OUT_OF_SCOPE, Embed, load_or_fit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "intents"


def _banking77(seed: int) -> tuple[list[str], list[str], list[str], list[str]]:
    with (DATA / "banking77" / "train.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault(r["category"], []).append(i)
    test = {int(i) for idx in by.values() for i in rng.choice(idx, size=len(idx) // 5, replace=False)}
    fit = [r for i, r in enumerate(rows) if i not in test]
    held = [r for i, r in enumerate(rows) if i in test]
    return (
        [r["text"] for r in fit],
        [r["category"] for r in fit],
        [r["text"] for r in held],
        [r["category"] for r in held],
    )


def _clinc(per_class: int | None, seed: int) -> tuple[list[str], list[str], list[str], list[str]]:
    data = json.loads((DATA / "clinc150" / "train_val.json").read_text("utf-8"))
    train = data["train"]
    if per_class:  # fewer fitting examples keep the one-off e5 fit inside the bench's time budget
        rng = np.random.default_rng(seed)
        by: dict[str, list[list[str]]] = {}
        for pair in train:
            by.setdefault(pair[1], []).append(pair)
        train = [
            p
            for v in by.values()
            for p in (
                v if len(v) <= per_class else [v[i] for i in rng.choice(len(v), per_class, replace=False)]
            )
        ]
    test = data["val"] + [[t, OUT_OF_SCOPE] for t, _ in data["oos_val"]]
    return [t for t, _ in train], [c for _, c in train], [t for t, _ in test], [c for _, c in test]


async def _measure(
    s: Session, name: str, split: tuple[list[str], ...], cache: bool
) -> dict[str, float | str]:
    fit_x, fit_y, test_x, test_y = split
    async with s.run("bench:support-triage", name) as scope:

        async def embed(texts: list[str]) -> np.ndarray:
            return np.asarray((await scope.embed(texts)).vectors, dtype=np.float32)

        e: Embed = embed
        t0 = time.perf_counter()
        model, cached = await load_or_fit(fit_x, fit_y, e, embed_model="local/e5-small", use_cache=cache)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        preds, _ = await model.predict(test_x, e)
        pred_s = time.perf_counter() - t0
    got = np.array([p.intent for p in preds])
    gold = np.array(test_y)
    ins = gold != OUT_OF_SCOPE
    row: dict[str, float | str] = {
        "set": name,
        "fit_n": len(fit_x),
        "test_n": len(test_x),
        "accuracy": float((got[ins] == gold[ins]).mean()),
        "msg_per_s": len(test_x) / pred_s,
        "to_e5": float(np.mean([p.stage == "e5" for p in preds])),
        "fit_s": fit_s,
        "cached": str(cached),
    }
    if (~ins).any():
        flagged = got == OUT_OF_SCOPE
        row["oos_recall"] = float(flagged[~ins].mean())
        row["oos_precision"] = float((~ins)[flagged].mean()) if flagged.any() else 0.0
    return row


async def main(per_class: int | None, cache: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.from_dict({"ledger": {"url": f"sqlite:///{tmp}/ledger.db"}})
        async with Session(config) as s:
            rows = [
                await _measure(s, "banking77", _banking77(0), cache),
                await _measure(s, "clinc150", _clinc(per_class, 0), cache),
            ]
    cols = [
        "set",
        "fit_n",
        "test_n",
        "accuracy",
        "oos_recall",
        "oos_precision",
        "msg_per_s",
        "to_e5",
        "fit_s",
        "cached",
    ]
    print(" | ".join(f"{c:>13}" for c in cols))
    for r in rows:
        cells = [r.get(c, "") for c in cols]
        print(" | ".join(f"{v:>13.3f}" if isinstance(v, float) else f"{v!s:>13}" for v in cells))
    b = rows[0]
    ok = float(b["accuracy"]) >= 0.90 and float(b["msg_per_s"]) >= 200
    print(
        f"banking77 accuracy {float(b['accuracy']):.3f} at {float(b['msg_per_s']):.0f} msg/s on "
        f"{os.cpu_count()} cores (target ≥0.90 and ≥200 msg/s: {'met' if ok else 'NOT met'}); clinc150 "
        f"in-scope {float(rows[1]['accuracy']):.3f}, OOS recall {float(rows[1].get('oos_recall', 0)):.3f}, "
        f"precision {float(rows[1].get('oos_precision', 0)):.3f}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--per-class", type=int, default=50, help="CLINC150 fitting examples per intent (0 = all)"
    )
    ap.add_argument("--no-cache", action="store_true", help="refit instead of using ~/.cache/tierwise")
    args = ap.parse_args()
    asyncio.run(main(args.per_class or None, not args.no_cache))
