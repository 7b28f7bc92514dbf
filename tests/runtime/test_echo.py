"""Answers, not echoes: output that writes the prompt, the system message or our own instructions back is
rejected, repaired or escalated, and never accepted as an answer; short legit answers always pass."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tierwise import InvalidOutput, Session
from tierwise.config import Config
from tierwise.core import Message
from tierwise.ledger import Ledger
from tierwise.orchestration.subagent import frame_tool_output
from tierwise.runtime.validation import OWN_INSTRUCTIONS, echo_of, repair_messages
from tierwise.testing import ChaosServer

SYSTEM = Message("system", "You triage support tickets. Answer with one label from the list given.")
QUESTION = "Which of these labels fits the ticket best: card_arrival, card_lost, refund_not_showing?"
FILE = "def configure(timeout: float = 5.0, retries: int = 3) -> None:\n    '''Set the client defaults.'''\n"
RELEASE = (
    "Summarize in one sentence what the release notes below say about the new retry policy and its defaults."
)
TURN_LIMIT = "You reached the limit of 2 tool turns. Answer now with what you found, without calling tools."
PROMPT = (
    SYSTEM,
    Message(
        "user",
        "Request: where is the default timeout set?\nFile: config.py\n\n"
        + frame_tool_output("read_file", FILE * 8),
    ),
    Message("user", TURN_LIMIT),
)


@pytest.mark.parametrize(
    "answer",
    [
        "card_arrival",  # a label that is in the prompt's own list
        "card lost",
        "The default timeout is 5.0 seconds, set in configure() in config.py.",
        # quoting the data the prompt carries (a file, a source) is what a good answer does
        FILE * 3,
        "Here is the function:\n" + FILE + "\nChange the default by passing timeout= to configure().",
        "echo: " + PROMPT[1].content[:64],  # the chaos server's own default reply: short, not an echo
    ],
)
def test_answers_pass(answer: str) -> None:
    assert echo_of(answer, answer, PROMPT) is None


@pytest.mark.parametrize(
    ("echo", "why"),
    [
        (" ".join([TURN_LIMIT] * 20), "repeats the instruction"),  # the coding assistant's ~20 copies
        (PROMPT[1].content, "copies the prompt"),  # the whole user message, data and all
        (SYSTEM.content + " " + SYSTEM.content, "lines of the prompt"),
        ("Request: where is the default timeout set?\nRequest: where is the default timeout set?", "lines"),
    ],
)
def test_echoes_are_caught(echo: str, why: str) -> None:
    found = echo_of(echo, echo, PROMPT)
    assert found is not None and why in found


def test_the_repair_instruction_is_never_an_answer() -> None:
    """PR review's summary read "The output is not valid JSON… Reply again with only the corrected JSON"."""
    convo = repair_messages(PROMPT[:2], "{not json", "the output is not valid JSON")
    data = {
        "summary": "The output is not valid JSON... Reply again with only the corrected JSON",
        "actions": [],
    }
    assert "repeats the instruction" in (echo_of(str(data), data, convo) or "")
    # Our own instruction strings are the ones the check knows (a changed wording must change both).
    assert any(p in convo[-1].content.lower() for p in OWN_INSTRUCTIONS)
    assert any(p in TURN_LIMIT.lower() for p in OWN_INSTRUCTIONS)


def test_a_labelled_question_repeated_as_the_answer_is_an_echo() -> None:
    q = "What limits the battery life of small sensors in the field?"
    prompt = (
        Message("user", f'Research question: {q}\n\n<source path="a.md" trust="untrusted-data">x</source>'),
    )
    data = {"answer": q, "citations": []}
    assert echo_of(str(data), data, prompt) is not None
    ok = {"answer": "Radio transmissions dominate the energy budget [1].", "citations": []}
    assert echo_of(str(ok), ok, prompt) is None


def test_echo_check_is_cheap() -> None:
    """Microseconds on short outputs (labels: no prompt work at all), well under a millisecond on a
    typical paragraph; the model call it guards takes seconds."""
    label, para = "card_arrival", "The default timeout is 5.0 seconds, set in configure() in config.py. " * 4
    for text, bound_us in ((label, 50), (para, 2000)):
        runs = []
        for _ in range(50):
            t0 = time.perf_counter()
            echo_of(text, text, PROMPT)
            runs.append(time.perf_counter() - t0)
        assert sorted(runs)[len(runs) // 2] * 1e6 < bound_us


def _calls(toml: Path, run_id: str) -> list:
    with Ledger(Config.load(toml).ledger.url) as ledger:
        return ledger.calls(run_id=run_id)


async def test_an_echo_is_repaired_through_the_runtime(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    """A reply that is the prompt itself is rejected; the repair asks for the model's own answer."""
    prompt = RELEASE
    chaos_server.set_script(
        {
            "rules": [
                {"times": 1, "reply": {"text": prompt}},
                {"reply": {"text": "Retries now back off exponentially."}},
            ]
        }
    )
    async with Session(chaos_toml) as s:
        result = await s.call(prompt, kind="extract")
    assert result.text == "Retries now back off exponentially."
    repair = chaos_server.requests("/v1/chat/completions")[-1]["body"]["messages"][-1]["content"]
    assert "failed validation" in repair and "own answer" in repair and "JSON" not in repair
    assert [c.status for c in _calls(chaos_toml, result.run_id)] == ["invalid_output", "ok"]


async def test_a_persistent_echo_escalates_then_is_no_answer(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    prompt = RELEASE
    chaos_server.set_script({"rules": [{"reply": {"text": prompt}}]})  # every tier writes the prompt back
    async with Session(chaos_toml) as s:
        with pytest.raises(InvalidOutput, match=r"copies the prompt|repeats lines"):
            await s.call(prompt, kind="extract")
    tiers = [r["model"] for r in chaos_server.requests("/v1/chat/completions")]
    assert tiers[0] != "large-model" and tiers[-1] == "large-model"  # escalated before giving up


async def test_empty_free_text_is_no_answer(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script(
        {"rules": [{"times": 1, "reply": {"text": "   "}}, {"reply": {"text": "billing"}}]}
    )
    async with Session(chaos_toml) as s:
        result = await s.call("Label this ticket: I was charged twice", kind="classify")
    assert result.text == "billing"
