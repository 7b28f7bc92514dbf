"""tierwise as the OpenAI Agents SDK's model provider: every agent's model calls take the one path.

    async with tierwise.Session() as session:
        result = await Runner.run(agent, "...", run_config=RunConfig(
            model_provider=tierwise.integrations.agents.provider(session, budget_usd=0.50)))

An agent's ``model`` is ``tierwise/auto`` (or unset: the router decides), ``tierwise/large|mini|nano`` (the
user pins a tier) or a catalog id (the user pins a model). A turn's kind comes from the agent's
``model_settings`` (``extra_args`` or ``metadata``: ``tierwise_kind``, ``tierwise_stakes``), else from what
the agent can do: one that can hand off or call other agents as tools plans (large by default), one with
function tools only is a tool_op (mini), anything else is inferred from the text.

**One tierwise run per ``Runner.run``.** The SDK hands a model no run object, but during every model call
it sets a per-run owner (``agents.models._run_context``, since 0.19) and calls each model it used with
``_cleanup_on_run_end(owner)`` when the run ends, failed or not. The provider opens a run (one budget, one
ledger tree) on the first call of an owner and closes it at that cleanup, with the run's error if it
failed. A ``Runner.run`` started inside another one's tool (agents as tools) joins the outer run, so
sub-agents share its budget. The budget refuses before a call: a refused call never reaches a provider.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tierwise.integrations.versions import require

VERSION = require("openai-agents", at_least="0.19", below="1", extra="agents")

from agents import Handoff, ModelProvider, Tool, Usage  # noqa: E402
from agents.agent_output import AgentOutputSchemaBase  # noqa: E402
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent  # noqa: E402
from agents.model_settings import ModelSettings  # noqa: E402
from agents.models._run_context import get_model_run_owner  # noqa: E402
from agents.models.chatcmpl_converter import Converter  # noqa: E402
from agents.models.chatcmpl_stream_handler import ChatCmplStreamHandler  # noqa: E402
from agents.models.fake_id import FAKE_RESPONSES_ID  # noqa: E402
from agents.models.interface import Model, ModelTracing  # noqa: E402
from agents.tracing import generation_span  # noqa: E402
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessage  # noqa: E402
from openai.types.chat import ChatCompletionMessageFunctionToolCall as FunctionToolCall  # noqa: E402
from openai.types.chat.chat_completion_chunk import (  # noqa: E402
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.chat.chat_completion_message_function_tool_call import Function  # noqa: E402
from openai.types.completion_usage import (  # noqa: E402
    CompletionTokensDetails,
    CompletionUsage,
    PromptTokensDetails,
)
from openai.types.responses import Response  # noqa: E402

from tierwise.core import Task  # noqa: E402
from tierwise.core import Usage as TierwiseUsage  # noqa: E402
from tierwise.errors import InputError  # noqa: E402
from tierwise.integrations.runs import HeldRun  # noqa: E402
from tierwise.integrations.translate import (  # noqa: E402
    Target,
    build_task,
    chat_messages,
    explicit_hints,
    parse_target,
    structural_hints,
    tool_spec,
)

if TYPE_CHECKING:
    from openai.types.responses.response_prompt_param import ResponsePromptParam

    from tierwise.runtime.result import Result
    from tierwise.runtime.scope import FanOut, Scope
    from tierwise.session import Session

__all__ = ["VERSION", "TierwiseModel", "TierwiseProvider", "provider"]

RUN_KIND = "agents"
# The run the current task's model calls belong to: a Runner.run started from one of its tools joins it.
_ACTIVE: ContextVar[HeldRun | None] = ContextVar("tierwise_agents_run", default=None)


def provider(
    session: Session, *, budget_usd: float | None = None, fan_out: FanOut | None = None
) -> TierwiseProvider:
    """A ModelProvider for ``RunConfig(model_provider=...)``. ``budget_usd`` caps each ``Runner.run``;
    ``fan_out`` bounds its concurrent model calls per tier (default: large 4, mini 8, nano 50)."""
    return TierwiseProvider(session, budget_usd=budget_usd, fan_out=fan_out)


@dataclass(slots=True)
class _Entry:
    owner: object  # held so its id is not reused while the entry lives
    run: HeldRun
    owned: bool  # False: a nested Runner.run that joined its parent's run
    baseline: BaseException | None  # an exception already being handled when the run began, not its own


class TierwiseProvider(ModelProvider):
    def __init__(
        self, session: Session, *, budget_usd: float | None = None, fan_out: FanOut | None = None
    ) -> None:
        if budget_usd is not None and not budget_usd > 0:
            raise InputError(
                f"budget must be greater than 0, got {budget_usd}: pass a positive amount in USD"
            )
        self.session = session
        self.budget_usd = budget_usd
        self.fan_out = fan_out
        self._models: dict[str, TierwiseModel] = {}
        self._runs: dict[int, _Entry] = {}

    def get_model(self, model_name: str | None) -> Model:
        key = model_name or ""
        model = self._models.get(key)
        if model is None:  # unknown names fail here, when the SDK resolves the agent's model
            model = self._models[key] = TierwiseModel(
                self, parse_target(model_name, self.session.config.catalog)
            )
        return model

    # --- runs ---------------------------------------------------------------------------------------

    @asynccontextmanager
    async def scope(self, label: str) -> AsyncIterator[Scope]:
        """The scope of the Runner.run making this call (opened on its first call)."""
        owner = get_model_run_owner()
        if owner is None:  # called outside a Runner (a model used directly): a run for this call alone
            run = self.session.run(RUN_KIND, label, budget_usd=self.budget_usd, fan_out=self.fan_out)
            async with run as scope:
                yield scope
            return
        entry = self._runs.get(id(owner))
        if entry is None:
            parent = _ACTIVE.get()
            if parent is not None and not parent.closed:
                entry = _Entry(owner, parent, owned=False, baseline=None)
            else:
                held = HeldRun(
                    self.session, kind=RUN_KIND, label=label, budget_usd=self.budget_usd, fan_out=self.fan_out
                )
                entry = _Entry(owner, held, owned=True, baseline=sys.exc_info()[1])
            self._runs[id(owner)] = entry
        _ACTIVE.set(entry.run)
        yield await entry.run.scope()

    async def end_run(self, owner: object, error: BaseException | None) -> None:
        entry = self._runs.pop(id(owner), None)
        if entry is not None and entry.owned:
            await entry.run.close(None if error is entry.baseline else error)

    async def aclose(self) -> None:
        """Close runs whose end the SDK never reported (a run abandoned mid-way)."""
        entries, self._runs = list(self._runs.values()), {}
        for entry in entries:
            if entry.owned:
                await entry.run.close()


class TierwiseModel(Model):
    """One agent model name (``tierwise/auto``, a tier or a catalog id) served through the one path."""

    def __init__(self, provider: TierwiseProvider, target: Target) -> None:
        self.provider = provider
        self.target = target

    def task(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
    ) -> Task:
        """One turn as a Task, converted with the SDK's own chat-completions converter."""
        chat: list[Any] = [{"role": "system", "content": system_instructions}] if system_instructions else []
        chat += Converter.items_to_messages(input)
        specs = [Converter.tool_to_openai(t) for t in tools]
        specs += [Converter.convert_handoff_tool(h) for h in handoffs]
        as_tools = any(getattr(t, "_is_agent_tool", False) for t in tools)
        hints = explicit_hints(model_settings.extra_args, model_settings.metadata) or structural_hints(
            delegates=bool(handoffs) or as_tools, has_tools=bool(tools)
        )
        schema = None
        if output_schema is not None and not output_schema.is_plain_text():
            schema = output_schema.json_schema()
        return build_task(
            chat_messages(chat),
            target=self.target,
            hints=hints,
            tools=tuple(tool_spec(s) for s in specs),
            json_schema=schema,
            max_output_tokens=model_settings.max_tokens,
            temperature=model_settings.temperature,
            metadata={"framework": "openai-agents", "agent_model": self.target.name},
        )

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: ResponsePromptParam | None = None,
    ) -> ModelResponse:
        task = self.task(system_instructions, input, model_settings, tools, output_schema, handoffs)
        with generation_span(model=self.target.name, disabled=tracing.is_disabled()) as span:
            async with self.provider.scope(_label(task)) as scope:
                result = await scope.call(task)
            usage = _usage(result.usage, result.attempts)
            span.span_data.model = result.model
            span.span_data.usage = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
        message = ChatCompletionMessage(
            role="assistant",
            content=result.text or None,
            tool_calls=[
                FunctionToolCall(
                    id=c.id, type="function", function=Function(name=c.name, arguments=c.arguments)
                )
                for c in result.tool_calls
            ]
            or None,
        )
        return ModelResponse(output=Converter.message_to_output_items(message), usage=usage, response_id=None)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: ResponsePromptParam | None = None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        """Responses-style events, made by the SDK's own chat-completions stream handler from tierwise's
        text deltas and the routed call's final tool calls and usage."""
        task = self.task(system_instructions, input, model_settings, tools, output_schema, handoffs)
        response = Response(
            id=FAKE_RESPONSES_ID,
            created_at=time.time(),
            model=self.target.name,
            object="response",
            output=[],
            tool_choice="auto",
            top_p=model_settings.top_p,
            temperature=model_settings.temperature,
            tools=[],
            parallel_tool_calls=False,
        )
        with generation_span(model=self.target.name, disabled=tracing.is_disabled()):
            async with self.provider.scope(_label(task)) as scope:
                live = scope.stream(task)
                async for event in ChatCmplStreamHandler.handle_stream(
                    response, _chunks(live, self.target.name)
                ):
                    yield event

    async def _cleanup_on_run_end(self, owner: object) -> None:
        # Called from the SDK's `finally`: sys.exc_info() is the run's error while one propagates.
        await self.provider.end_run(owner, sys.exc_info()[1])


def _label(task: Task) -> str:
    users = [m.content for m in task.messages() if m.role == "user"]
    return (users[0] if users else task.text)[:200]


def _usage(u: TierwiseUsage, attempts: int) -> Usage:
    return Usage(
        requests=max(1, attempts),
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        total_tokens=u.total_tokens,
        # Chat-completions shaped details: the SDK's Usage normalizes them (as for its own chat model).
        input_tokens_details=PromptTokensDetails(cached_tokens=u.cached_input_tokens),  # type: ignore[arg-type]
        output_tokens_details=CompletionTokensDetails(reasoning_tokens=u.reasoning_tokens),  # type: ignore[arg-type]
    )


async def _chunks(live: Any, model: str) -> AsyncIterator[ChatCompletionChunk]:
    """tierwise's stream as chat-completion chunks: text deltas, then the tool calls and usage."""
    created = int(time.time())

    def chunk(
        delta: ChoiceDelta, finish: Any = None, usage: CompletionUsage | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=FAKE_RESPONSES_ID,
            object="chat.completion.chunk",
            created=created,
            model=model,
            choices=[Choice(index=0, delta=delta, finish_reason=finish)],
            usage=usage,
        )

    async for text in live:
        if text:
            yield chunk(ChoiceDelta(content=text))
    result: Result = live.result
    calls = [
        ChoiceDeltaToolCall(
            index=i,
            id=c.id,
            type="function",
            function=ChoiceDeltaToolCallFunction(name=c.name, arguments=c.arguments),
        )
        for i, c in enumerate(result.tool_calls)
    ]
    if calls:
        yield chunk(ChoiceDelta(tool_calls=calls))
    u = result.usage
    usage = CompletionUsage(
        prompt_tokens=u.input_tokens,
        completion_tokens=u.output_tokens,
        total_tokens=u.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=u.cached_input_tokens),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=u.reasoning_tokens),
    )
    yield chunk(ChoiceDelta(), "tool_calls" if calls else "stop", usage)
