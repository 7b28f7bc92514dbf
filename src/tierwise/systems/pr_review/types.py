"""What a PR review is made of: the models' output schemas, the review's records and its bounds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

SYSTEM = "system:pr-review"
AREAS = ("security", "performance", "logic", "tests")
SEVERITIES = ("critical", "high", "medium", "low", "info")
Area = Literal["security", "performance", "logic", "tests"]
Severity = Literal["critical", "high", "medium", "low", "info"]

# Length and count bounds keep every answer short: for the embedded model they are grammar rules that make
# its output end (a 135M model left in an open string never closes it; grammar cost grows fast with these
# bounds, so they stay small), for hosted models a cap on cost.


def _said(value: str) -> str:
    # min_length only counts characters: an answer of spaces is still no answer.
    if not value.strip():
        raise ValueError("must say something, not only whitespace")
    return value


class MiniFinding(BaseModel):
    """One risk mini found in a file; the file is set by the pipeline, not by the model."""

    line: int = Field(description="line number in the new file, as shown at the start of the diff line")
    area: Area
    # A finding with no title is no finding (an area and a line alone name nothing to fix).
    title: str = Field(min_length=1, max_length=60, description="short title of the problem")
    detail: str = Field(default="", max_length=120, description="one or two sentences: why it is a risk")

    _title_said = field_validator("title")(_said)


class FileReview(BaseModel):
    findings: list[MiniFinding] = Field(default_factory=list, max_length=4)


class SeverityOut(BaseModel):
    severity: Severity


class DuplicateOut(BaseModel):
    duplicate: bool


class SummaryOut(BaseModel):
    summary: str = Field(min_length=1, max_length=500)
    actions: list[Annotated[str, Field(max_length=120)]] = Field(default_factory=list, max_length=4)

    _summary_said = field_validator("summary")(_said)


@dataclass(frozen=True, slots=True)
class Options:
    """Bounds on one review: what is read, how much fans out, how much each call may write."""

    max_files: int = 50  # changed files reviewed; the rest are listed as not reviewed
    max_patch_chars: int = 8000  # per file, so one large file cannot crowd the mini's context
    max_findings: int = 60  # findings graded by nano, so fan-out stays bounded
    max_dedup_calls: int = 20
    parallel: int = 8
    line_window: int = 3  # findings this close (in lines) may be duplicates
    same_title: float = 0.85  # title similarity at or above which near findings are duplicates outright
    maybe_title: float = 0.5  # near findings of different areas this similar are judged by nano too


@dataclass(slots=True)
class Finding:
    id: str
    file: str
    line: int
    area: str
    title: str
    detail: str
    severity: str = "medium"
    # the tier that graded it (the router's decision) | default (no grade) | rule (graded in code)
    severity_source: str = "nano"
    source: str = "mini"  # mini | rule (the injection detector)
    duplicates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class FileResult:
    path: str
    status: str
    additions: int
    deletions: int
    reviewed: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class PRReview:
    run_id: str
    repo: str
    base: str
    head: str
    base_sha: str
    head_sha: str
    merge_base: str
    files: list[FileResult]
    findings: list[Finding]
    removed_duplicates: int
    summary: str
    actions: list[str]
    spend: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    cut: list[dict[str, Any]] = field(default_factory=list)  # inputs cut from prompts to fit a window

    @property
    def verdict(self) -> str:
        """From severities, in code: a model cannot approve a change (nor be talked into it)."""
        if any(f.severity in ("critical", "high") for f in self.findings):
            return "request_changes"
        return "comment" if self.findings else "approve"

    def counts(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "repo": self.repo,
            "base": self.base,
            "head": self.head,
            "base_sha": self.base_sha,
            "head_sha": self.head_sha,
            "merge_base": self.merge_base,
            "verdict": self.verdict,
            "counts": self.counts(),
            "summary": self.summary,
            "actions": self.actions,
            "findings": [f.to_dict() for f in self.findings],
            "removed_duplicates": self.removed_duplicates,
            "files": [f.to_dict() for f in self.files],
            "warnings": self.warnings,
            "cut": self.cut,
            **self.spend,
        }
