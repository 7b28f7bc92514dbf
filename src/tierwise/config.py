"""Loading and validating tierwise.toml. Secrets come from environment variables only."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierwise.core import TaskKind, Tier
from tierwise.errors import ConfigError
from tierwise.models.catalog import Catalog, load_builtin, spec_from_config
from tierwise.models.spec import ModelSpec

CONFIG_NAME = "tierwise.toml"
DEFAULT_LEDGER_URL = "sqlite:///.tierwise/ledger.db"
LOCAL_TIERS = {
    Tier.LARGE: "local/smollm2-large",
    Tier.MINI: "local/smollm2-mini",
    Tier.NANO: "local/smollm2-nano",
}
OPENAI_TIERS = {
    Tier.LARGE: "openai/gpt-5.4",
    Tier.MINI: "openai/gpt-5.4-mini",
    Tier.NANO: "openai/gpt-5.4-nano",
}


class _Section(BaseModel):
    # TOML has nan and inf literals: a NaN cap compares false to every spend (no cap at all), an infinite
    # timeout or delay is a hang. No setting of ours means either.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LedgerConfig(_Section):
    url: str = DEFAULT_LEDGER_URL
    store_prompts: bool = False


class ProviderConfig(_Section):
    # litellm: any provider LiteLLM reaches (bedrock, vertex_ai, gemini, mistral, ollama ...), extra `litellm`
    kind: Literal["openai", "anthropic", "local", "litellm"]
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    # How the server takes structured output: "json_schema" (OpenAI, vLLM), "json_object" (llama.cpp's
    # server wants response_format={"type": "json_object", "schema": ...}), or "auto" (try, then remember).
    structured_output: Literal["auto", "json_schema", "json_object"] = "auto"
    max_connections: int = Field(default=200, gt=0)


class BudgetConfig(_Section):
    per_run_usd: float | None = Field(default=None, gt=0)
    per_run_tokens: int | None = Field(default=None, gt=0)
    per_run_calls: int | None = Field(default=None, gt=0)
    per_process_usd: float | None = Field(default=None, gt=0)
    per_process_tokens: int | None = Field(default=None, gt=0)
    per_process_calls: int | None = Field(default=None, gt=0)


class RetryConfig(_Section):
    max_attempts: int = Field(default=4, ge=1, le=20)
    base_delay_s: float = Field(default=0.5, ge=0)
    max_delay_s: float = Field(default=20.0, ge=0)
    repair_attempts: int = Field(default=1, ge=0, le=5)
    # Amplification bounds: requests one call may send over all its models, and a run's retries
    # (run_min_retries + run_retry_ratio x its calls).
    max_requests_per_call: int = Field(default=6, ge=1, le=50)
    run_retry_ratio: float = Field(default=0.5, ge=0, le=10)
    run_min_retries: int = Field(default=20, ge=0)
    # A model is skipped for breaker_cooldown_s after breaker_failures consecutive faults.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)


class RuleConfig(_Section):
    """A policy rule: when the task matches, use this tier (or model)."""

    kind: str | None = None
    contains: str | None = None  # case-insensitive substring of the task text
    stakes: Literal["low", "normal", "high"] | None = None
    tier: Tier | None = None
    model: str | None = None
    reason: str | None = None


class CascadeConfig(_Section):
    """``[routing.cascade]``: live calls start on ``start`` and climb the tiers until the validators accept.

    Validators: ``schema`` (structured output parses and matches), ``agreement`` (a second sample of the
    same model at ``temperature`` agrees with the answer), ``judge`` (a model on ``judge_tier`` says the
    answer is right), ``learned`` (the learned router's predicted quality; needs ``learned_model``).
    The answer is accepted when every validator's confidence reaches ``tau``.
    """

    validators: list[Literal["schema", "agreement", "judge", "learned"]] = Field(
        default_factory=lambda: ["schema", "agreement"]
    )
    tau: float = Field(default=0.6, ge=0, le=1)
    start: Tier = Tier.NANO
    judge_tier: Tier = Tier.LARGE
    temperature: float = Field(default=0.7, gt=0, le=2)


class RoutingConfig(_Section):
    router: str = "policy"  # policy | learned | nano | cascade | cascade+
    ambiguity_threshold: float = Field(default=0.6, ge=0, le=1)
    kinds: dict[str, Tier] = Field(default_factory=dict)  # kind → tier overrides
    rules: list[RuleConfig] = Field(default_factory=list)
    # The trained router file (`tierwise eval train`): a learned router's, or with router = "cascade+" a
    # cascade routing one (`tierwise eval train --router cascade+`).
    learned_model: str | None = None
    # trained model name → catalog id (learned and cascade+), e.g. {"gpt-4-1106-preview" = "openai/gpt-5.4"}
    learned_mapping: dict[str, str] = Field(default_factory=dict)
    # Below this predicted quality of its own pick the learned router defers to the policy (None: never).
    learned_min_confidence: float | None = Field(default=None, ge=0, le=1)
    # model id → models to try, in order, when it keeps failing (429/5xx/timeouts after retries).
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    cascade: CascadeConfig = CascadeConfig()
    nano_model: str | None = None  # the model the nano router asks (default: the nano tier's)


class ShadowConfig(_Section):
    """Online shadow checks: ``share`` of routed (non-large) calls is also sent to the large tier."""

    share: float = Field(default=0.0, ge=0, le=1)
    budget_usd: float = Field(default=1.0, gt=0)
    agree_at: float = Field(default=0.6, ge=0, le=1)  # agreement score counted as "same answer"
    # Also have a large-tier judge score both answers (one more call per shadow, on the shadow budget);
    # the scores become outcome rows for `tierwise eval train --from-ledger`.
    judge: bool = False
    alarm_disagreement: float = Field(default=0.25, ge=0, le=1)
    seed: int | None = None


class TracingConfig(_Section):
    exporter: Literal["none", "console", "otlp"] = "none"
    endpoint: str | None = None


class RawConfig(_Section):
    ledger: LedgerConfig = LedgerConfig()
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: list[dict[str, Any]] = Field(default_factory=list)
    tiers: dict[Tier, str] = Field(default_factory=dict)
    budget: BudgetConfig = BudgetConfig()
    retry: RetryConfig = RetryConfig()
    routing: RoutingConfig = RoutingConfig()
    tracing: TracingConfig = TracingConfig()
    shadow: ShadowConfig = ShadowConfig()


BUILTIN_PROVIDERS = {
    "openai": ProviderConfig(kind="openai", api_key_env="OPENAI_API_KEY"),
    "anthropic": ProviderConfig(kind="anthropic", api_key_env="ANTHROPIC_API_KEY"),
    "local": ProviderConfig(kind="local"),
}


class Config:
    """The validated configuration: sections, providers, the catalog and the tier map."""

    def __init__(self, raw: RawConfig, *, source: str = "<defaults>", env: dict[str, str] | None = None):
        self.raw = raw
        self.source = source
        env = dict(os.environ) if env is None else env
        self.providers: dict[str, ProviderConfig] = {**BUILTIN_PROVIDERS, **raw.providers}
        specs = load_builtin() + [
            spec_from_config(m, source=source, index=i) for i, m in enumerate(raw.models)
        ]
        self.catalog = Catalog(specs, resolver=self._resolve)
        for spec in self.catalog:
            if spec.provider not in self.providers:
                raise ConfigError(
                    f"{source}: model {spec.id!r} names provider {spec.provider!r}, which is not defined: "
                    f"add [providers.{spec.provider}] or use one of {', '.join(sorted(self.providers))}"
                )
        if raw.tiers:
            default = OPENAI_TIERS if env.get("OPENAI_API_KEY") else LOCAL_TIERS
            tiers = {**default, **raw.tiers}
        else:
            tiers = OPENAI_TIERS if env.get("OPENAI_API_KEY") else LOCAL_TIERS
        self.tiers: dict[Tier, str] = {}
        for tier, model_id in tiers.items():
            spec = self.catalog.find(model_id, tier)
            if spec is None:
                raise ConfigError(
                    f"{source}: tiers.{tier.value} = {model_id!r} is not a known model: "
                    "define it under [[models]] or pick one from `tierwise models`"
                )
            self.catalog.add(spec)
            self.tiers[tier] = spec.id
        _check_routing(self)

    def _resolve(self, model_id: str, tier: Tier | None) -> ModelSpec | None:
        """A model named here but listed nowhere: priced from genai-prices' data when its provider is
        configured; on a LiteLLM provider, also without a price (its cost is then unknown, never 0)."""
        provider = self.providers.get(model_id.partition("/")[0])
        if provider is None or provider.kind == "local":
            return None
        from tierwise.models.prices import spec_for  # loads genai-prices' data: only when needed

        return spec_for(model_id, tier or Tier.LARGE, priced_only=provider.kind != "litellm")

    @property
    def ledger(self) -> LedgerConfig:
        return self.raw.ledger

    @property
    def budget(self) -> BudgetConfig:
        return self.raw.budget

    @property
    def retry(self) -> RetryConfig:
        return self.raw.retry

    @property
    def routing(self) -> RoutingConfig:
        return self.raw.routing

    @property
    def shadow(self) -> ShadowConfig:
        return self.raw.shadow

    @property
    def tracing(self) -> TracingConfig:
        return self.raw.tracing

    @property
    def offline(self) -> bool:
        """True when every tier is served by the embedded local models."""
        return all(self.catalog.get(m).provider == "local" for m in self.tiers.values())

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> Config:
        try:
            raw = RawConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from None
        return cls(raw, source=source)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Config:
        """Load from ``path``, else $TIERWISE_CONFIG, else ./tierwise.toml, else built-in defaults."""
        chosen = path or os.environ.get("TIERWISE_CONFIG")
        if chosen is None and Path(CONFIG_NAME).is_file():
            chosen = CONFIG_NAME
        if chosen is None:
            return cls(RawConfig())
        file = Path(chosen)
        if not file.is_file():
            raise ConfigError(f"config file {str(file)!r} not found: check --config or TIERWISE_CONFIG")
        try:
            text = file.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"config file {str(file)!r} cannot be read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{file}: not UTF-8 text (byte {exc.start}): tierwise.toml must be a TOML text file"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except RecursionError:  # tomllib parses nested arrays and inline tables recursively
            raise ConfigError(f"{file}: not valid TOML: values nest too deeply") from None
        return cls.from_dict(data, source=str(file))


_KINDS = ", ".join(k.value for k in TaskKind)
ROUTERS = ("policy", "learned", "nano", "cascade", "cascade+")


def _check_routing(config: Config) -> None:
    """What pydantic cannot see: kinds, models and tiers named by [routing] must exist; a cascade must be
    able to judge free text. One line each, naming the key and the fix."""
    r, src = config.routing, config.source
    if r.router not in ROUTERS:
        raise ConfigError(f"{src}: routing.router = {r.router!r} is not one of {', '.join(ROUTERS)}")
    for key, tier in r.kinds.items():
        if key not in TaskKind._value2member_map_:
            raise ConfigError(f"{src}: routing.kinds.{key}: unknown task kind (allowed: {_KINDS})")
        if tier not in config.tiers:
            raise ConfigError(
                f"{src}: routing.kinds.{key} = {tier.value!r} but no model serves tier {tier.value}: "
                f"map one under [tiers] {tier.value} = ..."
            )
    for i, rule in enumerate(r.rules):
        where = f"{src}: routing.rules[{i}]"
        if rule.kind is not None and rule.kind not in TaskKind._value2member_map_:
            raise ConfigError(f"{where}.kind = {rule.kind!r}: unknown task kind (allowed: {_KINDS})")
        if (rule.tier is None) == (rule.model is None):
            raise ConfigError(f"{where}: give exactly one of tier = ... or model = ...")
        if rule.model is not None and config.catalog.find(rule.model) is None:
            raise ConfigError(
                f"{where}.model = {rule.model!r} is not a known model: define it under [[models]] "
                "or pick one from `tierwise models`"
            )
        if rule.tier is not None and rule.tier not in config.tiers:
            raise ConfigError(
                f"{where}.tier = {rule.tier.value!r}: no model serves that tier; map one in [tiers]"
            )
    for model_id, chain in r.fallbacks.items():
        key = config.catalog.find(model_id)
        for m in [model_id, *chain]:
            # An unlisted model in a chain serves the tier of the model it stands in for.
            if config.catalog.find(m, key.tier if key else None) is None:
                raise ConfigError(f"{src}: routing.fallbacks names {m!r}, which is not a known model")
    if r.nano_model is not None and config.catalog.find(r.nano_model) is None:
        raise ConfigError(f"{src}: routing.nano_model = {r.nano_model!r} is not a known model")
    c = r.cascade
    if r.router == "cascade":
        if set(c.validators) <= {"schema"}:
            raise ConfigError(
                f"{src}: routing.cascade.validators = {c.validators} cannot judge free text (schema judges "
                "only structured output): add 'agreement' or 'judge'"
            )
        if "learned" in c.validators and not r.learned_model:
            raise ConfigError(
                f"{src}: routing.cascade.validators has 'learned' but routing.learned_model is unset"
            )
    if r.router in ("learned", "cascade+") and not r.learned_model:
        flag = " --router cascade+" if r.router == "cascade+" else ""
        raise ConfigError(
            f"{src}: routing.router = {r.router!r} needs routing.learned_model = FILE "
            f"(fit one with `tierwise eval train{flag} --outcomes ... --out FILE`)"
        )


def _describe(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    # A key is the user's text: one with a newline or a control character is quoted, so the error stays
    # one line.
    key = ".".join(p if p.isprintable() else repr(p) for p in loc) or "?"
    section = _section_model(loc)
    allowed = ""
    if err["type"] == "extra_forbidden" and section is not None:
        allowed = f" (allowed: {', '.join(section.model_fields)})"
    elif "expected" in (err.get("ctx") or {}):
        allowed = f" (allowed: {err['ctx']['expected']})"
    return f"{source}: {key}: {err['msg']}{allowed}"


def _section_model(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = RawConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None:
            continue
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif part == "providers":
            model = ProviderConfig
        elif part == "rules":
            model = RuleConfig
    return model
