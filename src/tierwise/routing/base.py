"""The Router protocol every router implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from tierwise.routing.task import Decision, Task


@runtime_checkable
class Router(Protocol):
    """Decides tier and model for a task. ``name`` is what tierwise.toml selects it by."""

    name: str

    def route(self, task: Task) -> Decision: ...


# Routers that need a model call (nano, cascade) are handed one of these by the runtime, so routing never
# imports runtime. It runs a Task through the one path and returns the completion's text.
CallFn = Callable[[Task], Awaitable[str]]
