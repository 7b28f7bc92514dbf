"""What a batch does to each item: classify, extract, rank or ask, as a ``TaskSpec`` (plain, picklable data
that Ray ships to its workers) and the work it turns into.

Two shapes of work. Per item: one ``Task`` through the one path (``scope.call``), parsed into the row's
``result`` (an LLM classify under an enum schema, extract under the user's schema, ask). Per block: a
whole block of items answered at once by nano embeddings (``scope.embed``, one metered call per block) or
by a fitted classifier handed in by the caller (``--examples``), whose fast path makes no call at all.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tierwise.core import Task, TaskKind, parse_kind, parse_tier
from tierwise.errors import InputError
from tierwise.runtime.result import Result
from tierwise.scale.inputs import Item

TASKS = ("classify", "extract", "rank", "ask")
TaskName = Literal["classify", "extract", "rank", "ask"]
ZeroShot = Literal["embed", "llm"]


class Classifier(Protocol):
    """A fitted classifier (support triage's ``IntentClassifier`` behind an adapter): ``predict`` gives
    per text ``(label, confidence, stage)`` where stage names what answered (``static`` costs no call)."""

    async def predict(self, texts: list[str], embed: Any) -> list[tuple[str, float, str]]: ...


@dataclass(frozen=True)
class TaskSpec:
    task: TaskName
    labels: tuple[str, ...] = ()
    schema: dict[str, Any] | None = None
    prompt: str | None = None  # a template over the row's fields ({text} is the item's text); rank's query
    tier: str | None = None
    kind: str | None = None  # ask: the kind of every item's work (None: inferred per item from its text)
    zero_shot: ZeroShot = "llm"  # classify with --labels only: e5 similarity or the model under a grammar
    embed_model: str | None = None  # None: the runtime's embedding model
    classifier: Classifier | None = field(default=None, compare=False)  # --examples, fitted by the caller

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}: use one of {', '.join(TASKS)}")
        if self.task == "classify" and self.classifier is None and len(self.labels) < 2:
            raise InputError("classify needs labels: pass --labels a,b,c, --labels-file F or --examples F")
        if self.task == "extract" and not self.schema:
            raise InputError("extract needs a JSON Schema: pass --schema FILE.json")
        if self.task == "rank" and not (self.prompt or "").strip():
            raise InputError("rank needs the query to rank items against: pass --prompt 'QUERY'")
        if self.tier is not None:
            parse_tier(self.tier)
        if self.kind is not None:
            parse_kind(self.kind)
            if self.task != "ask":
                raise InputError(
                    f"--kind applies to --task ask; {self.task} items have their kind already: drop --kind"
                )
        if self.prompt and self.task != "rank":
            _check_template(self.prompt)

    @property
    def infers_kind(self) -> bool:
        """Each item's kind is inferred from its text (an ask without ``kind``)."""
        return self.task == "ask" and self.kind is None

    @property
    def per_block(self) -> bool:
        """Answered a block at a time (embeddings, a fitted classifier), not one call per item."""
        if self.task == "rank":
            return True
        return self.task == "classify" and (self.classifier is not None or self.zero_shot == "embed")

    def task_for(self, item: Item) -> Task:
        """The one-path task of a per-item spec."""
        text = render(self.prompt, item) if self.prompt else item.text
        tier = parse_tier(self.tier) if self.tier else None
        if self.task == "classify":
            listed = ", ".join(self.labels)
            return Task(
                input=f"Classify the text into exactly one of these labels: {listed}.\n\nText: {text}",
                kind=TaskKind.CLASSIFY,
                json_schema=label_schema(self.labels),
                tier=tier,
            )
        if self.task == "extract":
            return Task(
                input=f"Extract the fields of the JSON Schema from the text.\n\nText: {text}",
                kind=TaskKind.EXTRACT,
                json_schema=self.schema,
                tier=tier,
            )
        return Task(input=text, tier=tier, kind=parse_kind(self.kind) if self.kind else None)

    def parse(self, result: Result) -> Any:
        """The row's ``result`` from a per-item call."""
        if self.task == "classify":
            out = result.output
            return out.get("label") if isinstance(out, dict) else out
        if self.task == "extract":
            return result.output
        return result.text


def label_schema(labels: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }


def render(template: str, item: Item) -> str:
    fields = {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in item.data.items()}
    fields["text"] = item.text
    try:
        return template.format_map(fields)
    except KeyError as exc:
        raise InputError(
            f"--prompt names field {exc.args[0]!r}, which row {item.line} does not have"
        ) from None


def _check_template(template: str) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise InputError(
            f"--prompt is not a valid template ({exc}): use {{text}} or {{field}}, {{{{ for a brace}}"
        ) from None
    if any(not n.isidentifier() for n in names):
        raise InputError("--prompt placeholders must be field names such as {text}: use {{ and }} for braces")


def parse_labels(value: str | None = None, lines: str | None = None) -> tuple[str, ...]:
    """Labels from ``a,b,c`` or a file's text (one per line, ``#`` comments); at least two, no repeats."""
    raw = value.split(",") if value is not None else (lines or "").splitlines()
    labels = [x.strip() for x in raw if x.strip() and not x.strip().startswith("#")]
    labels = list(dict.fromkeys(labels))
    if len(labels) < 2:
        raise InputError(f"got {len(labels)} label(s): give at least 2, e.g. --labels billing,bug,other")
    return tuple(labels)
