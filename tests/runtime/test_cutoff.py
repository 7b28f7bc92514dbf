"""What counts as a cut-off answer: the provider said so, or (when it says nothing) JSON that breaks off."""

from __future__ import annotations

import pytest

from tierwise.core import Usage
from tierwise.providers.base import Completion
from tierwise.runtime.cutoff import cut_off


def _c(text: str, finish: str | None) -> Completion:
    return Completion(text, Usage(output_tokens=7), None, 0.1, finish_reason=finish)


@pytest.mark.parametrize("finish", ["length", "max_tokens"])
def test_the_provider_saying_length_is_a_cut(finish: str) -> None:
    why = cut_off(_c('{"draft": "aaaa', finish))
    assert why is not None and why.startswith("cut off at the output limit (7 output tokens")


@pytest.mark.parametrize("text", ['{"draft": "aaaa', '{"a": 1', "[1, 2,", '```json\n{"a": {"b": ', '{"a": '])
def test_json_breaking_off_with_no_finish_reason_is_a_cut(text: str) -> None:
    assert cut_off(_c(text, None)) == "cut off: the JSON breaks off before it closes"


@pytest.mark.parametrize(
    ("text", "finish"),
    [
        ('{"urgency": ', "stop"),  # the model stopped on its own: broken JSON, repaired as usual
        ('{"a": 1}', None),
        ('{"a": 1} trailing', None),  # wrong inside, not cut
        ("plain text", None),
        ("", None),
    ],
)
def test_other_answers_are_not_cuts(text: str, finish: str | None) -> None:
    assert cut_off(_c(text, finish)) is None
