"""PR review: each changed file reviewed (mini), findings deduped and graded (nano), a summary (large).

The tiers are the default policy's for each stage's kind and stakes; a ``tierwise.toml`` can move them.

    diff = collect_diff(repo, "main")
    async with Session() as s, s.run(SYSTEM, run_label(diff), metadata=run_metadata(diff)) as scope:
        rv = await review(scope, diff)
"""

from tierwise.systems.pr_review.git import DiffSet, FileDiff, check_repo, collect_diff
from tierwise.systems.pr_review.pipeline import review, run_label, run_metadata
from tierwise.systems.pr_review.report import formats, render_json, render_markdown, render_sarif, sarif_log
from tierwise.systems.pr_review.types import (
    AREAS,
    SEVERITIES,
    SYSTEM,
    FileResult,
    Finding,
    Options,
    PRReview,
)

__all__ = [
    "AREAS",
    "SEVERITIES",
    "SYSTEM",
    "DiffSet",
    "FileDiff",
    "FileResult",
    "Finding",
    "Options",
    "PRReview",
    "check_repo",
    "collect_diff",
    "formats",
    "render_json",
    "render_markdown",
    "render_sarif",
    "review",
    "run_label",
    "run_metadata",
    "sarif_log",
]
