"""One exception hierarchy: catch ``TierwiseError`` for everything, or a subclass for one cause.

Every message names the value that was wrong and what to do about it.
"""

from __future__ import annotations


class TierwiseError(Exception):
    """Base of every error tierwise raises on purpose."""


class ConfigError(TierwiseError):
    """tierwise.toml (or an argument standing in for it) is invalid."""


class InputError(TierwiseError):
    """A caller passed something unusable: empty text, unknown tier, malformed schema file."""


class BudgetExceeded(TierwiseError):
    """A call was refused because its worst-case cost would break a cap. Nothing was sent."""


class RoutingError(TierwiseError):
    """No model can take the task (capabilities, context window, missing tier)."""


class ProviderError(TierwiseError):
    """A provider failed after retries and fallback, or is not usable (missing key, missing package)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class ProviderSetupError(ProviderError, ConfigError):
    """A configured provider cannot be used here (missing credentials, a model string its library does
    not know). Found on first use, before anything is sent; never retried."""


class InvalidOutput(TierwiseError):
    """A model's output failed validation after repair and escalation."""


class LedgerError(TierwiseError):
    """The ledger cannot be opened or written."""


class StepFailed(TierwiseError):
    """A step of a run failed after the runtime's retries, fallback and escalation; finished steps are
    kept, so the run can be resumed."""

    def __init__(self, message: str, step_id: str) -> None:
        super().__init__(message)
        self.step_id = step_id


class ToolError(TierwiseError):
    """A tool refused or failed (a path outside the workspace, a missing file, a bad pattern)."""
