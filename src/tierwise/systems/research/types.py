"""What the research stages answer (pydantic schemas sized to the output budget) and what a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator

from tierwise.systems.reporting import spend_fields
from tierwise.systems.research.sources import normalize

SYSTEM = "system:research"
NANO_BATCH = 8  # findings per classify call: a nano model's context window is small
Label = Literal["supports", "contradicts", "irrelevant"]


class Finding(BaseModel):
    passage: int = Field(description="number of the passage the quote is from")
    # String bounds (≤ 256 stay in the local grammar) keep a small model's finding from running on.
    quote: str = Field(max_length=240, description="a span copied exactly from the passage")
    claim: str = Field(max_length=200, description="what the passage says, one sentence")
    relevance: int = Field(default=1, description="0 none, 1 weak, 2 strong, 3 direct")


class Evidence(BaseModel):
    findings: list[Finding] = Field(default_factory=list)


class Classified(BaseModel):
    id: int
    label: Label
    duplicate_of: int | None = None


class Classification(BaseModel):
    items: list[Classified] = Field(default_factory=list, max_length=NANO_BATCH)


class Citation(BaseModel):
    marker: int = Field(description="the number used as [n] in the answer")
    source: str = Field(description="source path exactly as given")
    quote: str = Field(description="span copied exactly from the source")


class Synthesis(BaseModel):
    answer: str = Field(min_length=1)
    citations: list[Citation] = Field(default_factory=list)

    @field_validator("answer")
    @classmethod
    def _said(cls, value: str) -> str:
        # An answer of whitespace is no answer: repaired or escalated, then reported as "no answer".
        if not value.strip():
            raise ValueError("must say something, not only whitespace")
        return value


def evidence_model(tokens: int, k: int) -> type[Evidence]:
    # A list cap that fits the output budget: grammar-constrained decoding obeys it, so a small model's
    # JSON closes before the token limit. (No string lengths: llama.cpp cannot parse long maxLength.)
    n = max(1, min(k, int(tokens * 0.8) // 125))  # ~125 tokens per finding
    return create_model(  # type: ignore[no-any-return]
        "Evidence", __base__=Evidence, findings=(list[Finding], Field(default_factory=list, max_length=n))
    )


def classification_model(n: int) -> type[Classification]:
    # exactly as many items as findings, so a small model cannot run on past the batch
    return create_model(  # type: ignore[no-any-return]
        "Classification",
        __base__=Classification,
        items=(list[Classified], Field(default_factory=list, max_length=n)),
    )


def synthesis_model(tokens: int) -> type[Synthesis]:
    n = max(1, min(12, int(tokens * 0.4) // 70))  # ~70 tokens per citation, the answer gets the rest
    return create_model(  # type: ignore[no-any-return]
        "Synthesis", __base__=Synthesis, citations=(list[Citation], Field(default_factory=list, max_length=n))
    )


@dataclass(slots=True)
class FoundEvidence:
    id: int
    source: str
    passage: int
    quote: str
    claim: str
    relevance: int
    label: str = "unclassified"
    duplicate_of: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


def _cell(text: str) -> str:
    return normalize(text).replace("|", "\\|")


@dataclass(slots=True)
class ResearchResult:
    run_id: str
    question: str
    answer: str
    citations: list[dict[str, Any]]
    dropped_citations: list[dict[str, Any]]
    findings: list[FoundEvidence]
    dropped_findings: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    spend: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    cut: list[dict[str, Any]] = field(default_factory=list)  # inputs cut from prompts to fit a window

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "question": self.question,
            "answer": self.answer,
            "citations": self.citations,
            "dropped_citations": self.dropped_citations,
            "findings": [f.to_dict() for f in self.findings],
            "dropped_findings": self.dropped_findings,
            "sources": self.sources,
            **spend_fields(self.spend),
            "warnings": self.warnings,
            "cut": self.cut,
        }

    def to_markdown(self) -> str:
        lines = [f"# {self.question}", "", self.answer.strip() or "_(no answer)_", ""]
        if self.citations:
            lines += ["## Sources", ""]
            for c in self.citations:
                lines.append(f'[{c["marker"]}] `{c["source"]}`: "{c["quote"]}"')
            lines.append("")
        if self.dropped_citations:
            lines += ["## Citations dropped (quote not found verbatim in the source)", ""]
            for c in self.dropped_citations:
                lines.append(f'- [{c["marker"]}] `{c["source"]}`: "{c["quote"]}" ({c["reason"]})')
            lines.append("")
        kept = [f for f in self.findings if f.label != "irrelevant" and f.duplicate_of is None]
        if kept:
            lines += ["## Evidence", "", "| # | label | source | claim |", "|---|---|---|---|"]
            for f in kept:
                cells = [str(f.id), f.label, f"{f.source}#{f.passage}", f.claim]
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            lines.append("")
        if self.cut:
            lines += ["## Cut to fit the model's context window", ""]
            lines += [
                f"- `{c['input']}`: {c['action']} in {c['step']} ({c['kept_tokens']:,} of {c['tokens']:,} "
                "tokens kept)"
                for c in self.cut
            ]
            lines.append("")
        total, large = self.spend.get("total_cost_usd") or 0.0, self.spend.get("all_large_counterfactual_usd")
        cost = f"Cost ${total:.6f}" + (" (notional)" if self.spend.get("notional") else "")
        if large is not None:
            cost += f"; all-large counterfactual ${large:.6f}"
        lines += [f"_{cost}; run {self.run_id}._", ""]
        return "\n".join(lines)
