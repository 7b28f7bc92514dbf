"""Routers: decide which tier and model run a task, and say why."""

from tierwise.routing.base import CallFn, Router
from tierwise.routing.kinds import KindGuess, KindInferrer
from tierwise.routing.policy import PolicyRouter, Rule
from tierwise.routing.task import Decision, Task

__all__ = ["CallFn", "Decision", "KindGuess", "KindInferrer", "PolicyRouter", "Router", "Rule", "Task"]
