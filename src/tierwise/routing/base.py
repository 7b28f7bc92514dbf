"""The Router protocol every router implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from tierwise.core import Decision, Task

# Routers that need a model (nano, cascade, a judge) are handed one of these by the runtime, so routing
# never imports runtime. It runs a Task pinned to its ``model`` (or ``tier``) through the one path —
# metered, under the run's budget, recorded as a routing call — and returns the completion's text.
CallFn = Callable[[Task], Awaitable[str]]


@runtime_checkable
class Router(Protocol):
    """Decides tier and model for a task, and says why. ``name`` is what tierwise.toml selects it by;
    ``calls_model`` says whether deciding may cost a model call (``tierwise route`` reports it)."""

    name: str
    calls_model: bool

    async def route(self, task: Task, call: CallFn) -> Decision: ...
