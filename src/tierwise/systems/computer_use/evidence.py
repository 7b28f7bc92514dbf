"""Whether a computer-use run reached its goal, checked in code against the final page.

A model's "success" is a claim, not a verdict: success needs evidence found in the final page's text or
URL. The evidence comes, in this order, from the user (``expect``: every string must be there; the
user's check decides), from the goal (its quoted strings: every one must be there, and the judge must
not disagree), or from the judge (the text it cites must be on the final page and must not have been on
the start page already: where the run began, nothing was achieved yet).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MIN_EVIDENCE = 3  # a cited "ok" or "a" proves nothing
_QUOTED = re.compile(r'"([^"]{2,200})"|“([^”]{2,200})”')


def goal_evidence(goal: str) -> list[str]:
    """The strings the goal quotes (``Order a pizza until "Thank you" shows`` → ``Thank you``)."""
    return [a or b for a, b in _QUOTED.findall(goal) if (a or b).strip()]


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def on_page(needle: str, page: str, url: str) -> bool:
    """Whether ``needle`` is in the page text or the URL (case and whitespace ignored)."""
    n = _norm(needle)
    return bool(n) and (n in _norm(page) or n in _norm(url))


@dataclass(slots=True)
class Check:
    success: bool
    source: str  # expect | goal | judge | none
    why: str
    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


def check(
    goal: str,
    expect: list[str] | tuple[str, ...],
    judged: bool | None,
    cited: str,
    page: tuple[str, str],
    start: tuple[str, str],
) -> Check:
    """The verdict. ``judged`` is the judge's claim (None: no verdict), ``cited`` its evidence text;
    ``page`` and ``start`` are (text, URL) of the final and the start page."""
    wanted, source = [e for e in expect if e.strip()], "expect"
    if not wanted:
        wanted, source = goal_evidence(goal), "goal"
    if wanted:
        found = [e for e in wanted if on_page(e, *page)]
        missing = [e for e in wanted if e not in found]
        if missing:
            what = "--expect" if source == "expect" else "the goal"
            return Check(False, source, f"not on the final page: {missing!r} (from {what})", found, missing)
        if source == "goal" and judged is False:
            why = f"the goal's text {found!r} is on the page, but the judge says the goal was not reached"
            return Check(False, source, why, found)
        return Check(True, source, f"found on the final page: {found!r}", found)
    if not judged:
        why = "the judge says the goal was not reached" if judged is False else "no verdict from the judge"
        return Check(False, "judge", why)
    text = cited.strip()
    if len(text) < MIN_EVIDENCE:
        return Check(False, "judge", "the judge claimed success but cited no evidence from the page")
    if not on_page(text, *page):
        return Check(False, "judge", f"the judge's evidence {text!r} is not on the final page", [], [text])
    if on_page(text, *start):
        return Check(
            False, "judge", f"the judge's evidence {text!r} was already on the start page", [], [text]
        )
    return Check(True, "judge", f"the judge's evidence {text!r} is on the final page", [text])
