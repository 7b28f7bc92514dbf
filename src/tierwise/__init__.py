"""tierwise: route each unit of LLM work to the right model tier, and meter every call.

The public names load lazily, so ``import tierwise.testing`` (used in subprocess servers) or the CLI do
not pay for the whole stack (SDKs, SQLAlchemy) before they need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tierwise import logs as _logs

__version__ = "0.1.0"

_logs.install()  # every part's log records are redacted, whichever module is imported first

_EXPORTS = {
    "Config": "tierwise.config",
    "BudgetExceeded": "tierwise.errors",
    "ConfigError": "tierwise.errors",
    "InputError": "tierwise.errors",
    "InvalidOutput": "tierwise.errors",
    "LedgerError": "tierwise.errors",
    "ProviderError": "tierwise.errors",
    "RoutingError": "tierwise.errors",
    "TierwiseError": "tierwise.errors",
    "ToolError": "tierwise.errors",
    "StepFailed": "tierwise.errors",
    "Capability": "tierwise.core",
    "Catalog": "tierwise.models",
    "ModelSpec": "tierwise.models",
    "Usage": "tierwise.core",
    "Decision": "tierwise.core",
    "Router": "tierwise.routing",
    "Task": "tierwise.core",
    "Budget": "tierwise.runtime",
    "Caps": "tierwise.runtime",
    "Result": "tierwise.runtime",
    "Run": "tierwise.runtime",
    "Scope": "tierwise.runtime",
    "Stream": "tierwise.runtime",
    "Session": "tierwise.session",
    "SyncSession": "tierwise.session",
    "Stakes": "tierwise.core",
    "TaskKind": "tierwise.core",
    "Tier": "tierwise.core",
}

__all__ = [
    "Budget",
    "BudgetExceeded",
    "Capability",
    "Caps",
    "Catalog",
    "Config",
    "ConfigError",
    "Decision",
    "InputError",
    "InvalidOutput",
    "LedgerError",
    "ModelSpec",
    "ProviderError",
    "Result",
    "Router",
    "RoutingError",
    "Run",
    "Scope",
    "Session",
    "Stakes",
    "StepFailed",
    "Stream",
    "SyncSession",
    "Task",
    "TaskKind",
    "Tier",
    "TierwiseError",
    "ToolError",
    "Usage",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tierwise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from tierwise.config import Config
    from tierwise.core import Capability, Stakes, TaskKind, Tier, Usage
    from tierwise.errors import (
        BudgetExceeded,
        ConfigError,
        InputError,
        InvalidOutput,
        LedgerError,
        ProviderError,
        RoutingError,
        StepFailed,
        TierwiseError,
        ToolError,
    )
    from tierwise.models import Catalog, ModelSpec
    from tierwise.routing import Decision, Router, Task
    from tierwise.runtime import Budget, Caps, Result, Run, Scope, Stream
    from tierwise.session import Session, SyncSession
