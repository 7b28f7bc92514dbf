"""Kinds inferred a block at a time (a batch) are the kinds the one path infers one call at a time."""

from __future__ import annotations

from pathlib import Path

from tierwise import Session
from tierwise.core import Task, TaskKind, Tier

TEXTS = [
    "Summarize this support ticket in one line: my card was charged twice.",
    "Fix the off-by-one error in the pagination helper and update its tests",
    "Is this email spam? 'You won a prize, click here'",
    "Plan the migration of our billing service to the new database",
    "Extract the invoice number and the total from: Invoice #4411, total $93.20",
    "hmm not sure what we want here, maybe something with the dashboard?",
    "Rank these three answers by how well they address the question",
    "item 7",
]


async def test_a_block_gets_the_kinds_calls_would_infer_one_by_one(chaos_toml: Path) -> None:
    async with Session(chaos_toml) as s, s.run("kinds") as scope:
        rt = s.runtime
        assert rt is not None and rt.inferrer is not None
        for tier in (Tier.NANO, None):
            tasks = [Task(input=t, tier=tier) for t in TEXTS]
            block = rt.infer_kinds(tasks)
            for one, task in zip(block, tasks, strict=True):
                if one.kind is None:  # left for the call: the static classifier is unsure, e5 decides
                    assert tier is None and rt.inferrer.classify(task.text) is None
                    continue
                alone = await rt._with_kind(task, scope)
                assert one.kind == alone.kind and one.ambiguity == alone.ambiguity
                assert one.metadata == alone.metadata
            if tier is not None:  # a pinned tier takes the static guess, sure or not
                assert all(t.kind is not None for t in block)


async def test_given_kinds_and_pinned_models_are_left_alone(chaos_toml: Path) -> None:
    async with Session(chaos_toml) as s:
        rt = s.runtime
        assert rt is not None
        given = Task(input=TEXTS[0], kind=TaskKind.CLASSIFY)
        pinned = Task(input=TEXTS[1], model="chaos/mini")
        assert rt.infer_kinds([given, pinned]) == [given, pinned]
