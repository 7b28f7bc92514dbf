"""Provider instances from configuration, created on first use and shared per process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from tierwise.errors import ProviderError, ProviderSetupError
from tierwise.providers.base import Provider


class ProviderSettings(Protocol):
    kind: str
    base_url: str | None
    api_key_env: str | None
    timeout_s: float
    structured_output: str
    max_connections: int


def build_provider(name: str, cfg: ProviderSettings, env: Mapping[str, str] | None = None) -> Provider:
    env = os.environ if env is None else env
    if cfg.kind == "local":
        from tierwise.providers.local import LocalProvider

        return LocalProvider(name)
    key = env.get(cfg.api_key_env) if cfg.api_key_env else None
    if cfg.kind == "litellm":
        return _litellm(name, cfg, key)
    if not key:
        if cfg.base_url is None or cfg.kind == "anthropic":
            var = cfg.api_key_env or ("OPENAI_API_KEY" if cfg.kind == "openai" else "ANTHROPIC_API_KEY")
            raise ProviderError(
                f"provider {name!r} needs an API key: set {var}, "
                "or remove the remote models from [tiers] to use the embedded local default"
            )
        key = "not-needed"  # local OpenAI-compatible servers usually take any key
    if cfg.kind == "openai":
        from tierwise.providers.openai import OpenAIProvider

        return OpenAIProvider(
            name,
            api_key=key,
            base_url=cfg.base_url,
            timeout_s=cfg.timeout_s,
            structured_output=cfg.structured_output,
            max_connections=cfg.max_connections,
        )
    from tierwise.providers.anthropic import AnthropicProvider

    return AnthropicProvider(name, api_key=key, base_url=cfg.base_url, timeout_s=cfg.timeout_s)


def _litellm(name: str, cfg: ProviderSettings, key: str | None) -> Provider:
    from tierwise.providers.litellm import LiteLLMProvider

    if not key and cfg.api_key_env and cfg.base_url is None:
        raise ProviderSetupError(f"provider {name!r} needs an API key: set {cfg.api_key_env}")
    if not key and cfg.base_url is not None:
        # A local or proxy endpoint: never send it the user's real provider key from the environment.
        key = "not-needed"
    # No api_key_env and no base_url: LiteLLM reads the provider's own variables (ANTHROPIC_API_KEY,
    # AWS_*, ...), checked on first use of each model.
    return LiteLLMProvider(
        name,
        api_key=key or None,
        api_base=cfg.base_url,
        timeout_s=cfg.timeout_s,
        structured_output=cfg.structured_output,
    )


class Providers:
    """Lazily built providers by name; closes them all at the end of a session."""

    def __init__(self, settings: Mapping[str, ProviderSettings], env: Mapping[str, str] | None = None):
        self._settings = settings
        self._env = env
        self._live: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        provider = self._live.get(name)
        if provider is None:
            if name not in self._settings:
                raise ProviderError(f"unknown provider {name!r}: define [providers.{name}] in tierwise.toml")
            provider = build_provider(name, self._settings[name], self._env)
            self._live[name] = provider
        return provider

    def usable(self, name: str) -> bool:
        """Whether a model on this provider can be called here (configured, with its key and package)."""
        try:
            self.get(name)
        except ProviderError:
            return False
        return True

    def register(self, name: str, provider: Provider) -> None:
        """Use a ready provider instance under ``name`` (tests, custom adapters)."""
        self._live[name] = provider

    async def aclose(self) -> None:
        for provider in self._live.values():
            await provider.aclose()
        self._live.clear()
