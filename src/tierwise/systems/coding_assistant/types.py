"""What a coding-assistant run is made of: the plan's schema, the synthesizer's reply split, the result."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from tierwise.systems.reporting import spend_fields

SYSTEM = "system:coding-assistant"
Mode = Literal["answer", "diff"]


class CodePlan(BaseModel):
    mode: Mode = "answer"
    # List caps bound what a small model writes (grammar-constrained decoding obeys them). No string
    # lengths: llama.cpp expands maxLength into a grammar too large to parse for long strings.
    searches: list[str] = Field(default_factory=list, max_length=6, description="strings to grep for")
    files: list[str] = Field(default_factory=list, max_length=6, description="likely relevant paths")
    # Short bounds (≤ 256) stay in the local grammar, so a small model's string closes; long ones do not.
    focus: str = Field(default="", max_length=240, description="what to look for in each file")


@dataclass(frozen=True, slots=True)
class Synthesis:
    """The synthesizer's reply split in two: the Markdown answer and the diff from its fenced block."""

    answer: str
    diff: str = ""


def clean_diff(text: str) -> str:
    """A diff without surrounding blank lines and with a final newline (git needs it)."""
    body = text.strip("\n")
    return body + "\n" if body.strip() else ""


def split_reply(text: str) -> Synthesis:
    # Plain Markdown with a fenced diff rather than JSON: models escape diffs in JSON badly, and a
    # reply cut off at the token limit still carries its answer instead of failing validation.
    m = re.search(r"```(?:diff|patch)[^\n]*\n(.*?)(?:```|\Z)", text, re.S)
    if m is None:
        m = re.search(r"^(--- a/.*)", text, re.S | re.M)  # an unfenced diff: from its header on
    if m is None:
        return Synthesis(text.strip())
    return Synthesis((text[: m.start()] + text[m.end() :]).strip(), clean_diff(m.group(1)))


@dataclass(slots=True)
class FileNote:
    path: str
    score: float
    notes: str = ""
    status: str = "ok"  # ok | failed

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class CodingResult:
    run_id: str
    request: str
    mode: Mode
    plan: dict[str, Any]
    files: list[FileNote]
    answer: str
    diff: str | None  # only a diff that `git apply --check` accepted
    diff_applies: bool | None  # None in answer mode
    rejected_diff: str | None
    diff_error: str | None
    spend: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    cut: list[dict[str, Any]] = field(default_factory=list)  # inputs cut to fit a model's window

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "request": self.request,
            "mode": self.mode,
            "plan": self.plan,
            "files": [f.to_dict() for f in self.files],
            "answer": self.answer,
            "diff": self.diff,
            "diff_applies": self.diff_applies,
            "rejected_diff": self.rejected_diff,
            "diff_error": self.diff_error,
            **spend_fields(self.spend),
            "warnings": self.warnings,
            "cut": self.cut,
        }

    def to_markdown(self) -> str:
        lines = [f"# {self.request}", "", self.answer.strip() or "_(no answer)_", ""]
        if self.diff:
            lines += ["## Proposed change (passes `git apply --check`)", "", "```diff", self.diff.rstrip()]
            lines += ["```", ""]
        elif self.mode == "diff":
            lines += [f"_No applicable diff: {self.diff_error or 'the model gave none'}._", ""]
        if self.files:
            lines += ["## Files inspected", ""]
            lines += [f"- `{f.path}` ({f.status})" for f in self.files]
            lines.append("")
        if self.cut:
            lines += ["## Cut to fit the model's context window", ""]
            lines += [f"- `{c['input']}`: {c['action']} in {c['step']} ({c['kept_tokens']:,} of "
                      f"{c['tokens']:,} tokens kept)" for c in self.cut]  # fmt: skip
            lines.append("")
        total, large = self.spend.get("total_cost_usd") or 0.0, self.spend.get("all_large_counterfactual_usd")
        cost = f"Cost ${total:.6f}" + (" (notional)" if self.spend.get("notional") else "")
        if large is not None:
            cost += f"; all-large counterfactual ${large:.6f}"
        return "\n".join([*lines, f"_{cost}; run {self.run_id}._", ""])
