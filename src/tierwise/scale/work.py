"""One item, or one block of items, through the one path, as output rows. Both executors run these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tierwise.core import Task, TaskKind
from tierwise.errors import BudgetExceeded, TierwiseError
from tierwise.runtime.scope import Scope
from tierwise.scale.inputs import Item
from tierwise.scale.tasks import TaskSpec

STATIC_MODEL = "local/static-classifier"  # what answers a classifier's fast path: no model call, no cost


def row(
    item_id: str,
    result: Any,
    *,
    tier: str | None,
    model: str | None,
    cost_usd: float | None,
    reason: str,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "id": item_id,
        "result": result,
        "tier": tier,
        "model": model,
        "cost_usd": cost_usd,
        "reason": reason,
        "error": error,
    }


def error_row(item_id: str, error: str) -> dict[str, Any]:
    return row(item_id, None, tier=None, model=None, cost_usd=None, reason="", error=error[:500])


def item_tasks(scope: Scope, spec: TaskSpec, items: Sequence[Item]) -> list[Task | None]:
    """The one-path tasks of a block of items, their kinds inferred together where the static classifier
    settles them (``Runtime.infer_kinds``); None for an item whose task cannot be built (``item_row``
    then reports why)."""
    tasks: list[Task | None] = []
    for it in items:
        try:
            tasks.append(spec.task_for(it))
        except TierwiseError:
            tasks.append(None)
    runtime = scope.runtime
    built = [t for t in tasks if t is not None]
    if runtime is None or not built:
        return tasks
    inferred = iter(runtime.infer_kinds(built))
    return [next(inferred) if t is not None else None for t in tasks]


async def item_row(scope: Scope, spec: TaskSpec, item: Item, task: Task | None = None) -> dict[str, Any]:
    """One call; a failure after the runtime's retries, fallback and escalation is the item's ``error``.
    A budget refusal is raised: the batch stops there, and the item is left for a resume."""
    try:
        r = await scope.call(task if task is not None else spec.task_for(item))
    except BudgetExceeded:
        raise
    except TierwiseError as exc:
        return error_row(item.id, str(exc) or type(exc).__name__)
    return row(
        item.id, spec.parse(r), tier=r.tier, model=r.model, cost_usd=r.cost_usd, reason=r.decision.reason
    )


class BlockWork:
    """Per-block answers (a fitted classifier, e5 zero-shot, rank), with the run's metered embeddings.
    The label or query vectors are embedded once per executor, not once per block."""

    def __init__(self, scope: Scope, spec: TaskSpec) -> None:
        self.scope, self.spec = scope, spec
        self._anchors: np.ndarray | None = None
        self._model: str | None = None

    async def embed(self, texts: list[str]) -> np.ndarray:
        kind = TaskKind.RANK if self.spec.task == "rank" else TaskKind.CLASSIFY
        res = await self.scope.embed(
            texts, model=self.spec.embed_model, kind=kind, reason=f"batch {self.spec.task}"
        )
        self._model = self.spec.embed_model or self._model
        vecs = np.asarray(res.vectors, dtype=np.float32)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9)

    async def rows(self, items: Sequence[Item]) -> list[dict[str, Any]]:
        spent0 = self.scope.budget.spent_usd
        try:
            if self.spec.classifier is not None:
                return await self._classified(items, spent0)
            return await self._similar(items, spent0)
        except BudgetExceeded:
            raise
        except TierwiseError as exc:
            return [error_row(it.id, str(exc)) for it in items]

    def _share(self, spent0: float, n: int) -> float:
        return max(self.scope.budget.spent_usd - spent0, 0.0) / max(n, 1)

    async def _classified(self, items: Sequence[Item], spent0: float) -> list[dict[str, Any]]:
        assert self.spec.classifier is not None
        preds = await self.spec.classifier.predict([it.text for it in items], self.embed)
        escalated = [p for p in preds if p[2] != "static"]
        each = self._share(spent0, len(escalated))  # only the escalated items were embedded
        out = []
        for it, (label, conf, stage) in zip(items, preds, strict=True):
            static = stage == "static"
            out.append(
                row(
                    it.id,
                    label,
                    tier="nano",
                    model=STATIC_MODEL if static else (self.spec.embed_model or "local/e5-small"),
                    cost_usd=0.0 if static else each,
                    reason=f"nano classifier, {stage} stage (confidence {conf:.3f})",
                )
            )
        return out

    async def _similar(self, items: Sequence[Item], spent0: float) -> list[dict[str, Any]]:
        if self._anchors is None:
            anchors = (
                [self.spec.prompt or ""]
                if self.spec.task == "rank"
                else [lab.replace("_", " ") for lab in self.spec.labels]
            )
            self._anchors = await self.embed(anchors)
            spent0 = self.scope.budget.spent_usd  # the anchors are the batch's, not this block's
        vecs = await self.embed([it.text for it in items])
        sims = vecs @ self._anchors.T
        each = self._share(spent0, len(items))
        model = self.spec.embed_model or "local/e5-small"
        if self.spec.task == "rank":
            return [
                row(
                    it.id,
                    round(float(s[0]), 6),
                    tier="nano",
                    model=model,
                    cost_usd=each,
                    reason="e5 similarity to the query",
                )
                for it, s in zip(items, sims, strict=True)
            ]
        best = sims.argmax(axis=1)
        return [
            row(
                it.id,
                self.spec.labels[int(b)],
                tier="nano",
                model=model,
                cost_usd=each,
                reason=f"zero-shot: e5 similarity to the label names ({float(s[b]):.3f})",
            )
            for it, b, s in zip(items, best, sims, strict=True)
        ]
