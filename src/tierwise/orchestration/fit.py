"""Fitting a prompt to the routed model's window: rank the inputs, keep the best whole, trim or drop the rest.

A system routes a task first, then builds its prompt for the model the router chose: the fixed part (the
system message, the question, the framing) plus inputs (files, hunks, passages) ranked by relevance. What
did not fit is returned as ``Cut`` records for the system's report, never an error. Only when even the
fixed part and the smallest useful input cannot fit is the router asked again with a hint one tier up (a
hint: the router still decides), and if no model can take it, ``RoutingError`` is raised before any spend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from tierwise.core import Decision, Message, Task, Tier
from tierwise.errors import RoutingError
from tierwise.models.spec import ModelSpec
from tierwise.models.tokens import count_messages, count_text, count_texts
from tierwise.runtime import Scope

__all__ = [
    "Cut", "Fitted", "Piece", "count_text", "describe", "fit", "fit_prompt", "fixed_tokens", "report",
    "room", "room_of", "trim",
]  # fmt: skip

# Our count is o200k; the model's own tokenizer may count more (llama.cpp's SmolLM2 counts 1.15x on
# code, up to 1.3x), and chat templates add their own tokens: fit to three quarters of what is left.
SAFETY = 0.75
FLOOR = 48  # tokens: an input trimmed below this says nothing useful, so it is dropped instead
MARK = "\n... (cut to fit the model's context window)"
_UP = {Tier.NANO: Tier.MINI, Tier.MINI: Tier.LARGE}


@dataclass(frozen=True, slots=True)
class Piece:
    """One input a prompt may carry: ``key`` names it in the report (a path, a hunk, a passage)."""

    key: str
    text: str
    rank: float = 0.0  # higher is kept first; ties keep input order
    floor: int = FLOOR  # fewer tokens than this and the piece is dropped rather than trimmed
    overhead: int = 2  # tokens the prompt adds around it (a separator, a header, a data frame)


@dataclass(frozen=True, slots=True)
class Cut:
    """An input left out of (or shortened in) a prompt for lack of window."""

    step: str
    key: str
    action: Literal["trimmed", "dropped"]
    tokens: int  # the input's own size
    kept: int = 0  # tokens of it the prompt carried

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "input": self.key, "action": self.action, "tokens": self.tokens,
                "kept_tokens": self.kept}  # fmt: skip


@dataclass(slots=True)
class Fitted:
    """The inputs a prompt carries (key → text, in input order), what was cut, and the routed model."""

    texts: dict[str, str]
    cuts: list[Cut] = field(default_factory=list)
    decision: Decision | None = None
    spec: ModelSpec | None = None

    def text(self, sep: str = "\n") -> str:
        return sep.join(self.texts.values())


def describe(cuts: Sequence[Cut]) -> str:
    """One line for a prompt's cuts (a console warning): what was trimmed and dropped, by name."""
    if not cuts:
        return ""
    trimmed = [c.key for c in cuts if c.action == "trimmed"]
    dropped = [c.key for c in cuts if c.action == "dropped"]
    parts = [f"{what} {', '.join(keys[:4])}{f' and {len(keys) - 4} more' if len(keys) > 4 else ''}"
             for what, keys in (("trimmed", trimmed), ("dropped", dropped)) if keys]  # fmt: skip
    return f"{cuts[0].step}: {'; '.join(parts)} to fit the model's context window"


def report(
    fitted: Fitted, scope: Scope, cut: list[dict[str, Any]], warnings: list[str], *, partial: bool
) -> None:
    """Note what a prompt left out in an output's ``cut`` list and warnings; when the run should have
    covered it (evidence, files to review), the run becomes partial."""
    if not fitted.cuts:
        return
    cut += [c.to_dict() for c in fitted.cuts]
    line = describe(fitted.cuts)
    warnings.append(line)
    if partial:
        scope.partial(line)


def room(spec: ModelSpec, max_output_tokens: int | None) -> int:
    """Prompt tokens (our count) a call to ``spec`` may send: the window minus the output it may write."""
    reserve = min(max_output_tokens or spec.max_output_tokens, spec.max_output_tokens)
    return max(0, int((spec.context_window - reserve) * SAFETY))


def room_of(scope: Scope) -> Callable[[str, int | None], int]:
    """``room`` by model id in ``scope``'s catalog: what a subagent loop fits its tool outputs to."""
    return lambda model_id, max_output_tokens: room(scope.model(model_id), max_output_tokens)


def fixed_tokens(task: Task, extra: Sequence[Message] = ()) -> int:
    """Tokens of everything a call sends besides the inputs: messages, tool specs and the output schema."""
    n = count_messages((*task.messages(), *extra))
    texts = [json.dumps(t.to_openai()) for t in task.tools]
    schema = task.schema()
    if schema is not None:
        texts.append(json.dumps(schema))
    return n + sum(count_texts(texts)) if texts else n


def trim(text: str, tokens: int) -> str:
    """The head of ``text`` in at most ``tokens`` tokens (with a visible mark), cut at a line end if near."""
    if count_text(text) <= tokens:
        return text
    budget = tokens - count_text(MARK)
    if budget <= 0:
        return ""
    cut = max(1, int(len(text) * budget / max(1, count_text(text))))
    while cut > 0:
        head = text[:cut]
        nl = head.rfind("\n")
        if nl >= cut * 0.7:  # a whole last line reads better, unless that loses too much
            head = head[:nl]
        if count_text(head) <= budget:
            return head + MARK
        cut = int(cut * 0.9)
    return ""


def fit(pieces: Sequence[Piece], budget: int, *, step: str) -> Fitted:
    """Keep pieces whole in rank order while they fit ``budget`` tokens, holding back the floor of each
    better-ranked piece too large to keep whole; then trim those pieces into what is left, best first,
    and drop what cannot keep its floor. A small file is not lost to a big one, nor a big one to many
    small ones. The kept texts come back in input order."""
    sizes = count_texts([p.text for p in pieces]) if pieces else []
    order = sorted(range(len(pieces)), key=lambda i: -pieces[i].rank)
    kept: dict[int, str] = {}
    cuts: list[Cut] = []
    left, held, deferred = budget, 0, []
    for i in order:
        p = pieces[i]
        size = sizes[i] + p.overhead
        if size <= left - held:
            kept[i], left = p.text, left - size
        else:
            deferred.append(i)
            held += min(p.floor, sizes[i]) + p.overhead
    for i in deferred:  # best first, each taking what is left: a better piece is never the one dropped
        p = pieces[i]
        room_ = left - p.overhead
        if sizes[i] <= room_:  # it fits now that the pieces above it were trimmed
            kept[i], left = p.text, left - sizes[i] - p.overhead
            continue
        head = trim(p.text, room_) if room_ >= p.floor else ""
        if head:
            n = count_text(head)
            kept[i], left = head, left - n - p.overhead
            cuts.append(Cut(step, p.key, "trimmed", sizes[i], n))
        else:
            cuts.append(Cut(step, p.key, "dropped", sizes[i]))
    texts = {pieces[i].key: kept[i] for i in sorted(kept)}
    return Fitted(texts, cuts)


def _spec(scope: Scope, decision: Decision) -> ModelSpec:
    return scope.model(decision.model)


async def fit_prompt(
    scope: Scope,
    task: Task,
    pieces: Sequence[Piece],
    *,
    extra: Sequence[Message] = (),
    need: int | None = None,
    limit: int | None = None,
) -> Fitted:
    """Route ``task`` (its input being the prompt without the pieces), then fit ``pieces`` into what the
    routed model's window leaves. ``extra`` are messages a loop adds (a subagent's system message);
    ``need`` is the least the pieces must get (default: the smallest piece's floor, capped by its size);
    ``limit`` caps the pieces' tokens below what the window allows (a user's own bound).

    If the routed model cannot hold the fixed part plus ``need``, the router is asked again with a hint
    one tier up; when no model fits, RoutingError is raised before anything is sent."""
    fixed = fixed_tokens(task, extra)
    if need is None:
        sizes = count_texts([p.text for p in pieces]) if pieces else []
        need = min((min(p.floor, s) + p.overhead for p, s in zip(pieces, sizes, strict=True)), default=0)
    decision = await scope.route(task)
    spec = _spec(scope, decision)
    tried = [spec]
    while room(spec, task.max_output_tokens) < fixed + need:
        up = _UP.get(decision.tier)
        if up is None:
            break
        again = await scope.route(replace(task, tier_hint=up))
        if again.model in {s.id for s in tried}:
            break
        decision, spec = again, _spec(scope, again)
        tried.append(spec)
    if room(spec, task.max_output_tokens) < fixed + need:
        windows = ", ".join(f"{s.id} ({s.context_window:,})" for s in tried)
        raise RoutingError(
            f"step {task.step_id or task.kind}: the prompt needs about {fixed + need:,} tokens plus its "
            f"output and no model the router chose has the window for it ({windows}): map this step's "
            "kind to a model with a larger context_window in tierwise.toml"
        )
    budget = room(spec, task.max_output_tokens) - fixed
    out = fit(pieces, budget if limit is None else min(budget, limit), step=task.step_id or "")
    out.decision, out.spec = decision, spec
    return out
