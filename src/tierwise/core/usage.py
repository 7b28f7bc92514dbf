"""Token usage of a call and the capabilities a task may need from a model."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Capability(StrEnum):
    VISION = "vision"
    TOOLS = "tools"
    JSON_SCHEMA = "json_schema"
    EMBEDDINGS = "embeddings"


class Usage(BaseModel):
    """Tokens of one call. ``input_tokens`` includes the cached ones, as the OpenAI API reports."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )
