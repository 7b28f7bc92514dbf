"""The runtime: the one path every model call takes, with budgets, retries, fallback and validation."""

from tierwise.runtime.budget import Budget, Caps, Reservation
from tierwise.runtime.result import Result, Run
from tierwise.runtime.runtime import Runtime, Stream
from tierwise.runtime.scope import FanOut, Scope

__all__ = ["Budget", "Caps", "FanOut", "Reservation", "Result", "Run", "Runtime", "Scope", "Stream"]
