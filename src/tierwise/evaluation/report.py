"""``--report DIR``: an HTML page with a PNG cost–quality plot of a replay (matplotlib, Agg backend)."""

from __future__ import annotations

import html
import itertools
import json
from pathlib import Path

import numpy as np

from tierwise.errors import InputError
from tierwise.evaluation.metrics import hull
from tierwise.evaluation.replay import ReplayResult

PLOT = "frontier.png"
RELIABILITY = "reliability.png"
PAGE = "index.html"


def plot_frontier(result: ReplayResult, path: Path) -> Path:
    """Router points and frontier vs single models (and their hull) vs the oracle."""
    import matplotlib

    matplotlib.use("Agg")  # no display: reports are written by servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    try:
        single = _dense(hull(result.singles))
        ax.plot(single[:, 0], single[:, 1], "--", color="black", lw=1.2, label="single-model hull", zorder=5)
        for p in result.singles:
            ax.scatter([p.cost], [p.quality], color="grey", s=22, zorder=3)
            ax.annotate(
                p.label.split("/")[-1],
                (p.cost, p.quality),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
                color="dimgrey",
            )
        if result.points:
            ax.scatter(
                [p.cost for p in result.points],
                [p.quality for p in result.points],
                s=8,
                alpha=0.35,
                color="tab:blue",
                label=f"{result.router} configurations",
            )
            front = _dense(hull(result.points))
            ax.plot(front[:, 0], front[:, 1], "-", color="tab:blue", lw=2, label=f"{result.router} frontier")
        ax.scatter(
            [result.oracle.cost],
            [result.oracle.quality],
            marker="*",
            s=160,
            color="tab:red",
            label="oracle",
            zorder=4,
        )
        ax.axvline(result.max_cost, color="lightgrey", lw=0.8)
        if result.cost_unit == "usd":
            ax.set_xscale("log")
            ax.set_xlabel("mean cost per prompt (USD, log scale)")
        else:
            ax.set_xlabel("share of calls to the strong model")
        ax.set_ylabel("mean quality")
        ax.set_title(
            f"{result.router}: AIQ {result.aiq:.4f} vs single-model hull {result.single_hull_aiq:.4f}"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_reliability(data: dict[str, object], path: Path) -> Path:
    """Predicted quality (binned) against the quality observed in each bin; the diagonal is calibrated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = [p for p in data["predicted"] if p is not None]  # type: ignore[attr-defined]
    obs = [o for o in data["observed"] if o is not None]  # type: ignore[attr-defined]
    counts = [c for c in data["count"] if c]  # type: ignore[attr-defined]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    try:
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="calibrated")
        ax.plot(pred, obs, "o-", color="tab:blue", label=f"router (ECE {data['ece']:.3f})")
        for x, y, n in zip(pred, obs, counts, strict=True):
            ax.annotate(str(n), (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted quality (bin mean)")
        ax.set_ylabel("observed quality")
        ax.set_title("reliability of the router's predictions")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def write_report(result: ReplayResult, directory: str | Path) -> Path:
    """Write ``index.html`` and ``frontier.png`` into ``directory``; returns the page's path."""
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create report directory {out}: {exc.strerror}") from None
    plot_frontier(result, out / PLOT)
    calib = result.extra.get("reliability")
    if calib:
        plot_reliability(calib, out / RELIABILITY)
    data = result.to_json()
    rows = [
        ("router", result.router),
        ("evaluation prompts", str(result.n)),
        ("training prompts", str(result.n_train)),
        ("split", result.split),
        ("AIQ (router)", f"{result.aiq:.4f}"),
        ("AIQ (single-model hull)", f"{result.single_hull_aiq:.4f}"),
        (
            "best single model",
            f"{result.best_single.label}: quality {result.best_single.quality:.4f}, "
            f"cost {result.best_single.cost:.6g}",
        ),
        ("oracle", f"quality {result.oracle.quality:.4f}, cost {result.oracle.cost:.6g}"),
    ]
    if result.budget_point is not None:
        rows.append(
            (
                "best at ≤ 25% of the best model's cost",
                f"quality {result.budget_point.quality:.4f} ({result.budget_pct_of_best:.1f}% of "
                f"{result.best_single.label}) at cost {result.budget_point.cost:.6g}",
            )
        )
    if len(result.models) == 2:
        rows += [
            ("APGR", _fmt(result.apgr)),
            ("CPT(50%)", _fmt(result.cpt50, "%")),
            ("CPT(80%)", _fmt(result.cpt80, "%")),
        ]
    ledger = result.extra.get("ledger")
    if ledger:
        for who in ("policy", "learned"):
            d = ledger[who]
            shares = ", ".join(f"{m} {v:.0%}" for m, v in d["share"].items())
            rows.append(
                (f"{who} on the ledger rows", f"quality {d['quality']:.4f}, cost {d['cost']:.6g} ({shares})")
            )
        rows.append(
            ("learned picks of an unscored model (estimated)", f"{ledger['learned']['estimated_share']:.1%}")
        )
    table = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    singles = "\n".join(
        f"<tr><td>{html.escape(p.label)}</td><td>{p.quality:.4f}</td><td>{p.cost:.6g}</td></tr>"
        for p in sorted(result.singles, key=lambda p: p.cost)
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tierwise replay: {html.escape(result.router)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:920px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}
th,td{{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}}
pre{{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}}</style></head><body>
<h1>Routing replay: {html.escape(result.router)}</h1>
<img src="{PLOT}" alt="cost–quality frontier" width="880">
<table>{table}</table>
{f'<h2>Calibration</h2><img src="{RELIABILITY}" alt="reliability diagram" width="440">' if calib else ""}
<h2>Single models</h2>
<table><tr><th>model</th><th>quality</th><th>cost</th></tr>{singles}</table>
<h2>JSON</h2><pre>{html.escape(json.dumps(data, indent=2))}</pre>
</body></html>
"""
    path = out / PAGE
    path.write_text(page, encoding="utf-8")
    return path


def _dense(h: np.ndarray, steps: int = 30) -> np.ndarray:
    """Hull segments sampled finely, so that they stay straight in cost when the axis is logarithmic."""
    if len(h) < 2:
        return h
    parts = [np.linspace(a, b, steps, endpoint=False) for a, b in itertools.pairwise(h)]
    return np.vstack([*parts, h[-1:]])


def _fmt(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.3f}{unit}"
