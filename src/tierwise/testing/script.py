"""The chaos server's behaviour as data: scripted replies, faults, fault schedules and latency.

A `Script` is plain JSON on the wire (`POST /_chaos/script`, `--script file.json`) and typed pydantic
objects in Python; unknown keys are rejected so that a typo in a test script fails loudly instead of
silently matching nothing.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue, PrivateAttr, model_validator

__all__ = [
    "Endpoint",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "JSONValue",
    "Match",
    "Reply",
    "Rule",
    "Script",
    "ToolCallReply",
    "UsageOverride",
]

JSONValue = JsonValue  # any JSON value: what json.loads returns
Endpoint = Literal["chat", "embeddings"]


def _all_endpoints() -> list[Endpoint]:
    return ["chat", "embeddings"]


FaultKind = Literal[
    "rate_limit",  # 429 with Retry-After
    "http_500",
    "http_502",
    "http_503",
    "drop",  # close the connection without a response
    "hang",  # hold the request open longer than any sane client timeout
    "malformed_json",  # 200 with a body that is not JSON
    "missing_choices",  # 200 with valid JSON that lacks `choices`
    "invalid_output",  # 200 whose content is truncated, unparsable JSON
    "schema_mismatch",  # 200 whose content is valid JSON that violates the requested schema
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Fault(_Strict):
    """One injected failure. In JSON a bare string is shorthand: `"http_500"` == `{"kind": "http_500"}`."""

    kind: FaultKind
    retry_after_s: float = Field(default=1.0, ge=0, description="Retry-After sent with a 429")
    hang_s: float = Field(default=60.0, gt=0, description="`hang` lasts this long unless the client leaves")

    @model_validator(mode="before")
    @classmethod
    def _from_str(cls, data: object) -> object:
        return {"kind": data} if isinstance(data, str) else data


class UsageOverride(_Strict):
    """Token counts to report instead of the server's estimates; unset fields keep the estimate."""

    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    cached_tokens: int | None = Field(default=None, ge=0)
    reasoning_tokens: int | None = Field(default=None, ge=0)


class ToolCallReply(_Strict):
    """A function call the fake model makes; `arguments` may be an object or an already-encoded string."""

    name: str
    arguments: dict[str, JSONValue] | str = Field(default_factory=dict)
    id: str | None = None


class Reply(_Strict):
    """What the fake model answers. With no content at all, the server's default reply is used, so a
    reply can override only usage or `served_model`."""

    text: str | None = None
    data: JSONValue = Field(default=None, validation_alias=AliasChoices("data", "json"))
    tool_calls: list[ToolCallReply] = Field(default_factory=list)
    usage: UsageOverride | None = None
    served_model: str | None = None
    finish_reason: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_str(cls, data: object) -> object:
        return {"text": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_content(self) -> Self:
        if self.text is not None and self.data is not None:
            raise ValueError("a reply has either `text` or `json` content, not both; drop one of them")
        return self

    @property
    def has_content(self) -> bool:
        return self.text is not None or self.data is not None or bool(self.tool_calls)


class Match(_Strict):
    """Conditions on a chat request; all that are set must hold. `user_*` look at the last user message,
    `system_*` at all system/developer messages joined by newlines."""

    model: str | None = None
    user_contains: str | None = None
    user_regex: str | None = None
    system_contains: str | None = None
    system_regex: str | None = None
    has_response_format: bool | None = None
    has_tools: bool | None = None

    _user_re: re.Pattern[str] | None = PrivateAttr(None)
    _system_re: re.Pattern[str] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _compile(self) -> Self:
        # Compile once at load time: a bad pattern fails the script upload, not some later request.
        for field, attr in (("user_regex", "_user_re"), ("system_regex", "_system_re")):
            pattern = getattr(self, field)
            if pattern is not None:
                try:
                    setattr(self, attr, re.compile(pattern))
                except re.error as exc:
                    raise ValueError(f"{field}={pattern!r} is not a valid regex: {exc}") from exc
        return self

    def matches(self, model: str, user: str, system: str, has_rf: bool, has_tools: bool) -> bool:
        if self.model is not None and self.model != model:
            return False
        if self.has_response_format is not None and self.has_response_format != has_rf:
            return False
        if self.has_tools is not None and self.has_tools != has_tools:
            return False
        if self.user_contains is not None and self.user_contains not in user:
            return False
        if self._user_re is not None and self._user_re.search(user) is None:
            return False
        if self.system_contains is not None and self.system_contains not in system:
            return False
        return self._system_re is None or self._system_re.search(system) is not None


class Rule(_Strict):
    """If `match` holds (an empty match always holds), answer with `fault` if set, else with `reply`.
    `times` makes the rule single-use (or N-use): after N matches it is skipped."""

    match: Match = Field(default_factory=Match)
    reply: Reply | None = None
    fault: Fault | None = None
    times: int | None = Field(default=None, ge=1)
    latency_s: float | None = Field(default=None, ge=0, description="replaces the script's fixed latency")


class FaultSchedule(_Strict):
    """A fault applied before any rule: to the first K requests, every Nth, or with probability p
    (seeded, so a run is reproducible). Requests are counted per schedule, over the endpoints and model
    it applies to."""

    fault: Fault
    first: int | None = Field(default=None, ge=1)
    every: int | None = Field(default=None, ge=1)
    probability: Annotated[float, Field(ge=0, le=1)] | None = None
    model: str | None = None
    endpoints: list[Endpoint] = Field(default_factory=_all_endpoints)

    @model_validator(mode="after")
    def _exactly_one_trigger(self) -> Self:
        set_ = [n for n in ("first", "every", "probability") if getattr(self, n) is not None]
        if len(set_) != 1:
            raise ValueError(
                f"a schedule needs exactly one of first / every / probability, got {set_ or 'none'}"
            )
        return self


class Script(_Strict):
    """Everything the server does. Latency fields left as None keep the server's startup values, so
    replacing the script in a test does not silently drop the latency a benchmark started with."""

    rules: list[Rule] = Field(default_factory=list)
    faults: list[FaultSchedule] = Field(default_factory=list)
    seed: int = 0
    latency_s: float | None = Field(default=None, ge=0)
    per_token_latency_s: float | None = Field(default=None, ge=0)
    served_model: str | None = None
    models: list[str] = Field(default_factory=list, description="ids listed by GET /v1/models")
    embedding_dim: int | None = Field(default=None, ge=1, le=65536)
