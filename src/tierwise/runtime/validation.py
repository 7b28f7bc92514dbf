"""Checking a model's structured output, and the repair prompt that quotes what was wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError
from referencing import Registry  # jsonschema's own dependency since 4.18
from referencing.exceptions import NoSuchResource, Unresolvable

from tierwise.core import Message
from tierwise.errors import InputError

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)

# Far deeper than any real schema, far below Python's recursion limit: jsonschema walks a schema
# recursively, so a hostile one 5,000 levels deep would end in a RecursionError, not a clear line.
MAX_SCHEMA_DEPTH = 64
_PROBES: tuple[Any, ...] = ({}, [], "", 0, None)


class OutputInvalid(Exception):
    """Validation failed; ``detail`` is what the repair prompt quotes."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _load_json(text: str) -> Any:
    m = _FENCE.match(text)
    body = m.group(1) if m else text.strip()
    if not body:
        raise OutputInvalid("the output was empty; expected a JSON value")
    try:
        # strict=False: grammar-constrained local models may emit raw control characters inside strings.
        return json.loads(body, strict=False)
    except RecursionError:
        raise OutputInvalid("the output nests too deeply; expected flatter JSON") from None
    except json.JSONDecodeError as exc:
        raise OutputInvalid(
            f"the output is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def _refuse(uri: str) -> Any:
    raise NoSuchResource(ref=uri)


# jsonschema would fetch a remote $ref over the network (deprecated, but still its default): a schema is
# data from the user, and checking it must never open a connection or wait on one.
_OFFLINE = Registry(retrieve=_refuse)  # type: ignore[call-arg]


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema, registry=_OFFLINE)


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in ``value``; iterative, so any depth is measured safely."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_SCHEMA_DEPTH:
                break
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def check_schema(schema: Any, *, where: str = "the JSON schema") -> dict[str, Any]:
    """A user's JSON Schema, checked before any call: an object, nested at most MAX_SCHEMA_DEPTH levels,
    valid under Draft 2020-12 and not a ``$ref`` loop. Anything else is one InputError line."""
    if not isinstance(schema, dict):
        raise InputError(f"{where} must be a JSON object (a JSON Schema), got {type(schema).__name__}")
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        raise InputError(f"{where} nests deeper than {MAX_SCHEMA_DEPTH} levels: flatten it or use $defs")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
        # A schema that refers to itself with nothing in between ({"$ref": "#"}) loops on any value:
        # find it now, not after a paid call.
        validator = _validator(schema)
        for probe in _PROBES:
            any(validator.iter_errors(probe))
    except jsonschema.SchemaError as exc:
        raise InputError(f"{where} is not a valid JSON Schema: {exc.message}") from None
    except RecursionError:
        raise InputError(f"{where} refers to itself without end ($ref loop): break the cycle") from None
    except Unresolvable as exc:
        raise InputError(f"{where} has a $ref that cannot be resolved ({exc}): use #/$defs/...") from None
    return schema


def load_schema(path: Path) -> dict[str, Any]:
    """Read and check a JSON Schema file (``tierwise ask --schema``)."""
    where = f"schema file {str(path)!r}"
    if not path.is_file():
        raise InputError(f"{where} not found: pass a JSON Schema file")
    try:
        schema = json.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(
            f"{where} nests deeper than {MAX_SCHEMA_DEPTH} levels: flatten it or use $defs"
        ) from None
    return check_schema(schema, where=where)


def validate(text: str, *, model: type[BaseModel] | None = None, schema: dict[str, Any] | None = None) -> Any:
    """The parsed output (a pydantic instance or plain JSON), or OutputInvalid."""
    if model is not None:
        data = _load_json(text)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            lines = [
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:8]
            ]
            raise OutputInvalid("; ".join(lines)) from None
    if schema is not None:
        data = _load_json(text)
        try:
            errors = sorted(_validator(schema).iter_errors(data), key=lambda e: list(e.path))
        except Unresolvable as exc:  # the schema's fault: no repair of the output can help
            raise InputError(f"the JSON schema has a $ref that cannot be resolved ({exc})") from None
        except RecursionError:
            check_schema(schema)  # a $ref loop is the schema's fault; else the output nests too deeply
            raise OutputInvalid("the output nests too deeply to validate; reply with flatter JSON") from None
        if errors:
            lines = [f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors[:8]]
            raise OutputInvalid("; ".join(lines))
        return data
    return text


REPAIR_JSON = "Reply again with only the corrected JSON, matching the schema exactly."
REPAIR_TEXT = "Reply again with your own answer to the request, in your own words."


def repair_messages(
    previous: tuple[Message, ...], bad_output: str, detail: str, *, structured: bool = True
) -> tuple[Message, ...]:
    """The conversation plus the bad answer and a request to fix exactly the quoted errors."""
    quoted = bad_output if len(bad_output) <= 2000 else bad_output[:2000] + " …"
    ask = REPAIR_JSON if structured else REPAIR_TEXT
    return (
        *previous,
        Message("assistant", quoted),
        Message("user", f"That output failed validation: {detail}. {ask}"),
    )


# --- answers, not echoes ------------------------------------------------------------------------------
# A small model handed a long prompt often writes the prompt back: the question, the system message, our
# repair or turn-limit instruction. Such output parses, so it needs its own check. Data the prompt quotes
# (frames marked trust="untrusted-data", long JSON strings: sources, diffs, files, tickets) may be quoted
# back; instructions and questions may not. Only long overlaps and whole instruction lines count, so a
# classify label that appears in the prompt's list of labels is still an answer.

ECHO_SPAN = 12  # words: a verbatim run at least this long is copied, not a coincidence...
ECHO_CHARS = 80  # ...and this many characters: a dozen short words can still be a common phrase
ECHO_SHARE = 0.6  # of the output's words inside such runs: the output is mostly a copy
ECHO_LINE = 5  # words: a whole line or sentence of the prompt this long, copied, is an echo...
ECHO_LINES = 8  # ...when such lines make up most of the answer and at least this many words
_MAX_ECHO_WORDS = 4000  # beyond this, the head of an output says enough
# Phrases of our own instructions (repair prompt, subagent turn limit): never part of a real answer.
OWN_INSTRUCTIONS = (
    "reply again with only the corrected json",
    "reply again with your own answer to the request",
    "that output failed validation",
    "answer now with what you found",
)
_WORD = re.compile(r"\w+")
_FRAMED = re.compile(r'<([A-Za-z_]+)\b[^>]*\btrust="untrusted-data"[^>]*>.*?</\1>', re.S)
_LONG_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.){60,}"')
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_LABEL = re.compile(r"^[^:\n]{1,40}:\s+(.+)$")


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


class _Prompt:
    """The prompt as the echo check reads it, normalized once and only as far as a check needs."""

    def __init__(self, messages: Sequence[Message]) -> None:
        # Earlier assistant turns are left out: a repaired answer rightly repeats most of its first draft.
        self.raw = "\n".join(m.content for m in messages if m.role != "assistant")
        self._own = _LONG_QUOTED.sub(" ", _FRAMED.sub(" ", self.raw))
        self._full: str | None = None
        self._text: str | None = None
        self._units: frozenset[str] | None = None

    @property
    def full(self) -> str:
        """Everything the model was sent, data included, padded so runs match on word boundaries."""
        if self._full is None:
            self._full = f" {_norm(self.raw)} "
        return self._full

    @property
    def text(self) -> str:
        """Only the prompt's own words: instructions and questions, without the data it quotes."""
        if self._text is None:
            self._text = f" {_norm(self._own)} "
        return self._text

    @property
    def units(self) -> frozenset[str]:
        """Whole lines and sentences of the prompt's own words (and a labelled line's value), normalized."""
        if self._units is None:
            units: set[str] = set()
            for line in self._own.splitlines():
                labelled = _LABEL.match(line.strip())
                for piece in (line, *_SENTENCE.split(line), *([labelled.group(1)] if labelled else [])):
                    norm = _norm(piece)
                    if norm.count(" ") + 1 >= ECHO_LINE:
                        units.add(norm)
            self._units = frozenset(units)
        return self._units


def _in(words: list[str], i: int, j: int, text: str) -> bool:
    return f" {' '.join(words[i:j])} " in text


def _copied_words(words: list[str], text: str) -> int:
    """Words of ``words`` inside verbatim runs of at least ECHO_SPAN words of ``text``."""
    covered, i, n = 0, 0, len(words)
    while i + ECHO_SPAN <= n:
        first, size = i + ECHO_SPAN, sum(len(w) + 1 for w in words[i : i + ECHO_SPAN])
        while first < n and size < ECHO_CHARS:  # the shortest run that is long in words and characters
            size += len(words[first]) + 1
            first += 1
        if size < ECHO_CHARS or not _in(words, i, first, text):
            i += 1
            continue
        # Gallop, then bisect: the longest run starting at i, in O(log n) substring searches.
        good, step = first, ECHO_SPAN
        while good < n and _in(words, i, min(n, good + step), text):
            good, step = min(n, good + step), step * 2
        lo, hi = good, min(n, good + step)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _in(words, i, mid, text) else (lo, mid)
        end = hi if hi > good and _in(words, i, hi, text) else lo
        covered += end - i
        i = end
    return covered


def _strings(value: Any) -> list[str]:
    """The string leaves of a parsed output (a pydantic instance, JSON, or plain text)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    out: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return out


def echo_of(text: str, output: Any, messages: Sequence[Message]) -> str | None:
    """Why ``text`` (parsed as ``output``) repeats the prompt instead of answering it, or None."""
    words = _WORD.findall(text.lower())[:_MAX_ECHO_WORDS]
    if not words:
        return None
    leaves = [(_norm(s), s) for s in _strings(output)]
    main, main_raw = max(leaves, key=lambda x: len(x[0]), default=("", ""))
    long_enough = len(words) >= ECHO_SPAN
    if not long_enough and main.count(" ") + 1 < ECHO_LINE:
        return None  # short answers (labels, severities, numbers) are never echoes
    prompt = _Prompt(messages)
    said = f" {' '.join(words)} "
    for phrase in OWN_INSTRUCTIONS:
        if f" {phrase} " in said and f" {phrase} " in prompt.text:
            return f"the output repeats the instruction it was given ({phrase!r}) instead of answering"
    # Mostly a copy of the prompt, and some of the copy is the prompt's own words: quoting the data a
    # prompt carries (a source, a file) is allowed, writing its instructions or question back is not.
    if long_enough and _copied_words(words, prompt.text):
        share = _copied_words(words, prompt.full) / len(words)
        if share >= ECHO_SHARE:
            return f"the output copies the prompt ({share:.0%} of its words verbatim) instead of answering it"
    # The main content (at least half of what the output says) is made of whole lines of the prompt.
    total = sum(leaf.count(" ") + 1 for leaf, _ in leaves if leaf)
    if main and (main.count(" ") + 1) * 2 >= total:
        copied, share = _lines_share(main_raw, prompt.units)
        if copied >= ECHO_LINES and share >= ECHO_SHARE:
            return f"the output repeats lines of the prompt ({main[:60]!r}...) instead of answering it"
    return None


def _lines_share(text: str, units: frozenset[str]) -> tuple[int, float]:
    """Words of ``text`` in lines (or sentences) that are whole lines of the prompt, and their share."""
    copied = total = 0
    for line in text.splitlines():
        for piece in _SENTENCE.split(line) if _norm(line) not in units else [line]:
            norm = _norm(piece)
            if not norm:
                continue
            n = norm.count(" ") + 1
            total += n
            if n >= ECHO_LINE and norm in units:
                copied += n
    return copied, copied / total if total else 0.0


def check_answer(text: str, output: Any, messages: Sequence[Message], *, structured: bool) -> None:
    """OutputInvalid when a parsed answer is no answer: an echo of the prompt, or empty free text."""
    if not structured and not text.strip():
        raise OutputInvalid("the output was empty; expected an answer")
    why = echo_of(text, output, messages)
    if why is not None:
        raise OutputInvalid(why)
