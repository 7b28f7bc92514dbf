"""tierwise as a pydantic-ai ``Model``: every request of a pydantic-ai agent takes the one path.

    async with tierwise.Session() as session:
        agent = Agent(TierwiseModel(session, budget_usd=0.50), output_type=Invoice, tools=[...])
        result = await agent.run("...")

``model`` is ``tierwise/auto`` (the router decides), ``tierwise/large|mini|nano`` (a tier pin) or a catalog
id. A request's kind is ``kind=`` or the run's model settings' ``tierwise_kind`` (``tierwise_stakes``), else
``tool_op`` when the agent has function tools, else inferred from the text.

**One tierwise run per agent run.** pydantic-ai enters ``Model._run_scope()`` around each agent run; the
model opens a tierwise run there (one budget, one ledger tree), and an agent run inside a tool of another
joins the outer one. Given a ``Scope`` instead of a ``Session`` (``TierwiseModel(scope)``), every request
goes into that run. Structured output works as pydantic-ai's native output (a JSON schema tierwise
validates) or as output tools; usage is reported in each response's ``RequestUsage``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tierwise.integrations.versions import require

VERSION = require("pydantic-ai-slim", at_least="1.0", below="3", extra="pydantic-ai")

from pydantic_ai.messages import (  # noqa: E402
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponseStreamEvent,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse  # noqa: E402
from pydantic_ai.profiles import ModelProfile  # noqa: E402
from pydantic_ai.settings import ModelSettings  # noqa: E402
from pydantic_ai.usage import RequestUsage  # noqa: E402

from tierwise.core import Message, Stakes, TaskKind, ToolCall, ToolSpec, parse_kind  # noqa: E402
from tierwise.core import Usage as TierwiseUsage  # noqa: E402
from tierwise.errors import InputError  # noqa: E402
from tierwise.integrations.translate import (  # noqa: E402
    AUTO,
    Hints,
    arguments_json,
    build_task,
    explicit_hints,
    parse_target,
    structural_hints,
)
from tierwise.runtime.scope import Scope  # noqa: E402

if TYPE_CHECKING:
    from tierwise.core import Task
    from tierwise.runtime.result import Result
    from tierwise.session import Session

__all__ = ["VERSION", "TierwiseModel"]

RUN_KIND = "pydantic-ai"
_SCOPE: ContextVar[Scope | None] = ContextVar("tierwise_pydantic_ai_run", default=None)


class TierwiseModel(Model):
    """A pydantic-ai model whose requests are routed, budgeted and metered by tierwise."""

    def __init__(
        self,
        source: Session | Scope,
        model: str = AUTO,
        *,
        budget_usd: float | None = None,
        kind: TaskKind | str | None = None,
        stakes: Stakes | str = Stakes.NORMAL,
        settings: ModelSettings | None = None,
    ) -> None:
        if budget_usd is not None and not budget_usd > 0:
            raise InputError(
                f"budget must be greater than 0, got {budget_usd}: pass a positive amount in USD"
            )
        self._scope = source if isinstance(source, Scope) else None
        self._session = None if isinstance(source, Scope) else source
        catalog = source.runtime.catalog if isinstance(source, Scope) and source.runtime else None
        if catalog is None:
            assert self._session is not None
            catalog = self._session.config.catalog
        self.target = parse_target(model, catalog)
        self._budget = budget_usd
        self._hints = Hints(parse_kind(kind), Stakes(stakes), "kind set by the model") if kind else None
        profile = ModelProfile(
            supports_tools=True,
            supports_json_schema_output=True,
            supports_json_object_output=True,
            default_structured_output_mode="native",  # tierwise validates the schema (repair, escalate)
        )
        super().__init__(settings=settings, profile=profile)

    @property
    def model_name(self) -> str:
        return self.target.name

    @property
    def system(self) -> str:
        return "tierwise"

    # --- runs ---------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _run_scope(self) -> AsyncIterator[None]:
        """pydantic-ai holds this around an agent run: one tierwise run for all of its requests."""
        if self._scope is not None or _SCOPE.get() is not None or self._session is None:
            yield  # a given scope, or an agent run inside another one's tool: it joins the outer run
            return
        async with self._session.run(RUN_KIND, "pydantic-ai agent run", budget_usd=self._budget) as scope:
            token = _SCOPE.set(scope)
            try:
                yield
            finally:
                _SCOPE.reset(token)

    @asynccontextmanager
    async def _call_scope(self, task: Task) -> AsyncIterator[Scope]:
        scope = self._scope or _SCOPE.get()
        if scope is not None:
            yield scope
            return
        assert self._session is not None  # a request outside an agent run: a run for it alone
        async with self._session.run(RUN_KIND, task.text[:200], budget_usd=self._budget) as own:
            yield own

    # --- requests -----------------------------------------------------------------------------------

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        task = self.task(messages, model_settings, params)
        async with self._call_scope(task) as scope:
            result = await scope.call(task)
        parts: list[Any] = [TextPart(content=result.text)] if result.text else []
        parts += [
            ToolCallPart(tool_name=c.name, args=c.arguments, tool_call_id=c.id) for c in result.tool_calls
        ]
        return ModelResponse(
            parts=parts,
            usage=_request_usage(result.usage),
            model_name=result.model,
            provider_name="tierwise",
            provider_details=_details(result),
            finish_reason="tool_call" if result.tool_calls else "stop",
        )

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: Any = None,
    ) -> AsyncGenerator[StreamedResponse]:
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        task = self.task(messages, model_settings, params)
        async with self._call_scope(task) as scope:
            yield _Streamed(model_request_parameters=params, _live=scope.stream(task), _name=self.model_name)

    def task(
        self, messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> Task:
        """One request as a Task: instructions, history (tool calls and returns), tools, output schema."""
        chat: list[Message] = []
        instructions = _instructions(self, messages, params)
        if instructions:
            chat.append(Message("system", instructions))
        for msg in messages:
            chat += _request_messages(msg) if isinstance(msg, ModelRequest) else [_response_message(msg)]
        function_tools = list(getattr(params, "declared_function_tools", params.function_tools))
        tools = tuple(
            ToolSpec(t.name, t.description or "", dict(t.parameters_json_schema))
            for t in [*function_tools, *params.output_tools]
        )
        schema = None
        if params.output_mode == "native" and params.output_object is not None:
            schema = dict(params.output_object.json_schema)
        hints = (
            self._hints
            or explicit_hints(settings)
            or structural_hints(delegates=False, has_tools=bool(function_tools))
        )
        s: Mapping[str, Any] = settings or {}
        return build_task(
            chat,
            target=self.target,
            hints=hints,
            tools=tools,
            json_schema=schema,
            max_output_tokens=s.get("max_tokens"),
            temperature=s.get("temperature"),
            metadata={"framework": "pydantic-ai", "agent_model": self.target.name},
        )


@dataclass
class _Streamed(StreamedResponse):
    """tierwise's text deltas as pydantic-ai stream events; tool calls and usage once the call ends."""

    _live: Any = None
    _name: str = AUTO
    _timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        parts = self._parts_manager
        async for delta in self._live:
            for event in _events(parts.handle_text_delta(vendor_part_id="content", content=delta)):
                yield event
        result: Result = self._live.result
        for c in result.tool_calls:
            yield parts.handle_tool_call_part(
                vendor_part_id=c.id, tool_name=c.name, args=c.arguments, tool_call_id=c.id
            )
        self._usage = _request_usage(result.usage)
        self.provider_details = _details(result)
        self.finish_reason = "tool_call" if result.tool_calls else "stop"
        self._name = result.model

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def provider_name(self) -> str:
        return "tierwise"

    @property
    def provider_url(self) -> None:
        return None

    @property
    def timestamp(self) -> datetime:
        return self._timestamp


def _events(out: Any) -> list[Any]:
    # pydantic-ai 1.x returns one event or None from the parts manager; 2.x returns an iterator of events.
    if out is None:
        return []
    return list(out) if hasattr(out, "__next__") else [out]


def _instructions(model: Model, messages: list[ModelMessage], params: ModelRequestParameters) -> str | None:
    parts = getattr(model, "_get_instruction_parts", None)
    if parts is not None:  # pydantic-ai 2.x: structured parts, prompted-output instructions included
        found = parts(messages, params)
        return "\n\n".join(p.content for p in found) if found else None
    legacy = getattr(model, "_get_instructions", None)  # pydantic-ai 1.x
    return legacy(messages, params) if legacy is not None else None


def _user_text(content: object) -> tuple[str, tuple[str, ...]]:
    if isinstance(content, str):
        return content, ()
    texts: list[str] = []
    images: list[str] = []
    for item in content if isinstance(content, list | tuple) else [content]:
        if isinstance(item, str):
            texts.append(item)
        elif getattr(item, "kind", None) == "image-url":
            images.append(item.url)
        elif getattr(item, "is_image", False):
            images.append(item.data_uri)
        else:
            raise InputError(
                f"user content {type(item).__name__} is not supported by tierwise: send text or images"
            )
    return "\n".join(texts), tuple(images)


def _request_messages(msg: ModelRequest) -> list[Message]:
    out: list[Message] = []
    for part in msg.parts:
        if isinstance(part, SystemPromptPart):
            out.append(Message("system", part.content))
        elif isinstance(part, UserPromptPart):
            text, images = _user_text(part.content)
            out.append(Message("user", text, images=images))
        elif isinstance(part, ToolReturnPart):
            out.append(Message("tool", part.model_response_str(), tool_call_id=part.tool_call_id))
        elif getattr(part, "part_kind", None) == "retry-prompt" and getattr(part, "tool_name", None):
            out.append(Message("tool", part.model_response(), tool_call_id=part.tool_call_id))
        elif hasattr(part, "model_response"):  # validation feedback: told to the model as the user
            out.append(Message("user", part.model_response()))
    return out


def _response_message(msg: ModelResponse) -> Message:
    text = "".join(p.content for p in msg.parts if isinstance(p, TextPart))
    calls = tuple(
        ToolCall(p.tool_call_id, p.tool_name, arguments_json(p.args))
        for p in msg.parts
        if isinstance(p, ToolCallPart)
    )
    return Message("assistant", text, calls)


def _request_usage(u: TierwiseUsage) -> RequestUsage:
    return RequestUsage(
        input_tokens=u.input_tokens, cache_read_tokens=u.cached_input_tokens, output_tokens=u.output_tokens
    )


def _details(result: Result) -> dict[str, Any]:
    return {
        "tier": result.tier,
        "reason": result.decision.reason,
        "cost_usd": result.cost_usd,
        "run_id": result.run_id,
    }
