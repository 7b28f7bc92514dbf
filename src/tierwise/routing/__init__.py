"""Routers: decide which tier and model run a task, and say why.

The routers trained on outcomes (learned, cascade, cascade+) and the nano router load lazily: they pull in
numpy and the embedders, which the policy router on the hot path never needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tierwise.core import Decision, Task
from tierwise.routing.base import CallFn, Router
from tierwise.routing.kinds import KindGuess, KindInferrer
from tierwise.routing.policy import PolicyRouter, Rule

_LAZY = {
    "CascadeRouter": "tierwise.routing.cascade",
    "CascadeRoutingModel": "tierwise.routing.cascade_model",
    "CascadeRoutingRouter": "tierwise.routing.cascade_live",
    "LearnedModel": "tierwise.routing.learned",
    "LearnedRouter": "tierwise.routing.learned",
    "NanoRouter": "tierwise.routing.nano",
    "Outcomes": "tierwise.routing.outcomes",
}

__all__ = [
    "CallFn",
    "CascadeRouter",
    "CascadeRoutingModel",
    "CascadeRoutingRouter",
    "Decision",
    "KindGuess",
    "KindInferrer",
    "LearnedModel",
    "LearnedRouter",
    "NanoRouter",
    "Outcomes",
    "PolicyRouter",
    "Router",
    "Rule",
    "Task",
]

if TYPE_CHECKING:
    from tierwise.routing.cascade import CascadeRouter
    from tierwise.routing.cascade_live import CascadeRoutingRouter
    from tierwise.routing.cascade_model import CascadeRoutingModel
    from tierwise.routing.learned import LearnedModel, LearnedRouter
    from tierwise.routing.nano import NanoRouter
    from tierwise.routing.outcomes import Outcomes


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tierwise.routing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
