"""OpenAI-style error bodies: every failure a client meets is ``{"error": {message, type, param, code}}``.

Clients (the openai SDK, the Agents SDK, LiteLLM) branch on the status code and read ``error.message``; so
each error names the problem and the fix in one line, as the rest of tierwise does.
"""

from __future__ import annotations

from typing import Any

from tierwise.errors import (
    BudgetExceeded,
    ConfigError,
    InputError,
    InvalidOutput,
    ProviderError,
    RoutingError,
    TierwiseError,
)
from tierwise.ledger import redact


class ApiError(Exception):
    """An error answered to the client as an OpenAI-style body with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": redact(self.message),
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"retry-after": str(max(1, round(self.retry_after_s)))}


def from_tierwise(exc: TierwiseError) -> ApiError:
    """The status and type a client should see for one of our errors."""
    msg = str(exc)
    if isinstance(exc, BudgetExceeded):
        return ApiError(429, msg, type="insufficient_quota", code="budget_exceeded")
    if isinstance(exc, (InputError, ConfigError)):
        return ApiError(400, msg, code="invalid_request")
    if isinstance(exc, RoutingError):
        return ApiError(400, msg, code="routing_error")
    if isinstance(exc, InvalidOutput):
        return ApiError(502, msg, type="api_error", code="invalid_output")
    if isinstance(exc, ProviderError):
        if exc.retryable:
            return ApiError(
                503, msg, type="api_error", code="upstream_unavailable", retry_after_s=exc.retry_after_s
            )
        return ApiError(502, msg, type="api_error", code="upstream_error")
    return ApiError(500, msg, type="api_error", code="internal_error")
