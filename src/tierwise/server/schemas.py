"""The request bodies the proxy accepts, as pydantic models built once at import.

Strict types (``"5"`` is not a number, ``1`` is not ``true``), as the OpenAI API answers; ``extra="allow"``
where OpenAI accepts fields we do not use (``user``, ``seed``, ``logprobs``...), so clients that send them
keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGES = 2048  # per request: a conversation past this is a client bug or an attack, not a prompt
MAX_TOOLS = 128  # OpenAI's own limit
TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


# --- chat completions -------------------------------------------------------------------------------


class ImageUrl(_Open):
    url: str = Field(min_length=1)
    detail: str | None = None


class ContentPart(_Open):
    type: str
    text: str | None = None
    image_url: ImageUrl | str | None = None


class FunctionCall(_Open):
    name: str
    arguments: str = "{}"


class ChatToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ChatToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionDef(_Open):
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(_Open):
    type: Literal["function"]
    function: FunctionDef


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    tools: list[ChatTool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None


# --- responses --------------------------------------------------------------------------------------


class ResponsesText(_Open):
    format: dict[str, Any] | None = None


class ResponsesRequest(_Open):
    model: str = Field(min_length=1)
    input: str | Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_MESSAGES)]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: str | dict[str, Any] | None = None
    text: ResponsesText | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool | None = False
    store: bool | None = None
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None


class ResponsesFunctionTool(_Open):
    type: Literal["function"]
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


# --- embeddings -------------------------------------------------------------------------------------


class EmbeddingsRequest(_Open):
    model: str = Field(min_length=1)
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
