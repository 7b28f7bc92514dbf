"""tierwise: route each unit of LLM work to the right model tier, and meter every call."""

from tierwise.config import Config
from tierwise.errors import (
    BudgetExceeded,
    ConfigError,
    InputError,
    InvalidOutput,
    LedgerError,
    ProviderError,
    RoutingError,
    TierwiseError,
)
from tierwise.models import Capability, Catalog, ModelSpec, Usage
from tierwise.routing import Decision, Router, Task
from tierwise.runtime import Budget, Caps, Result, Run
from tierwise.session import Session, SyncSession
from tierwise.tiers import Stakes, TaskKind, Tier

__version__ = "0.1.0"

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
    "Session",
    "Stakes",
    "SyncSession",
    "Task",
    "TaskKind",
    "Tier",
    "TierwiseError",
    "Usage",
]
