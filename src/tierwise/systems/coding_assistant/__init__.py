"""Coding assistant: a plan (large), a subagent per relevant file (mini), an answer or checked diff (large).

The tiers are the default policy's for each stage's kind and stakes; a ``tierwise.toml`` can move them.

    ws = check_inputs(repo, request)
    async with Session() as s, s.run(SYSTEM, run_label(request), metadata=run_metadata(ws)) as scope:
        result = await run(scope, ws, request)
"""

from tierwise.systems.coding_assistant.pipeline import run, run_label, run_metadata
from tierwise.systems.coding_assistant.repo import check_inputs, git_apply_check, search_files
from tierwise.systems.coding_assistant.types import (
    SYSTEM,
    CodePlan,
    CodingResult,
    FileNote,
    Mode,
    Synthesis,
    clean_diff,
    split_reply,
)

__all__ = [
    "SYSTEM",
    "CodePlan",
    "CodingResult",
    "FileNote",
    "Mode",
    "Synthesis",
    "check_inputs",
    "clean_diff",
    "git_apply_check",
    "run",
    "run_label",
    "run_metadata",
    "search_files",
    "split_reply",
]
