"""Process settings: one typed object, read from the environment and `.env`, once.

Every variable is listed in `.env.example`. Values come from the process environment,
then from a `.env` file in the working directory (the environment wins; an empty value
counts as unset); `WFG_ENV_FILE` names another file, or none when empty (the test suite
sets it empty, so a developer's `.env` cannot change what the tests run). A bad value
stops the process with one line naming the variable:

    GATEWAY_PORT must be a port number, got 'http'

`WFG_DATABASE_URL` wins over `DATABASE_URL`: LiteLLM reads `DATABASE_URL` itself (it
refuses SQLite and turns on its own Prisma features), so a deployment may hide ours there.

Process entry points (the servers, `gateway-admin`, Alembic) call `get_settings()` and
pass the object down; tests build one from a mapping with `Settings.from_env({...})`.
Nothing else reads the environment for our variables (`tests/unit/test_settings_contract.py`
walks the code). The variables other libraries read from the process environment
themselves are in `THIRD_PARTY_VARIABLES`: a `.env` file cannot set those, they must be
in the real environment (deploy/compose.yaml passes `.env` as the environment).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = [
    "ENV_FILE_VARIABLE",
    "PROJECT_ROOT",
    "THIRD_PARTY_VARIABLES",
    "InvalidSettings",
    "Settings",
    "environment_variables",
    "get_settings",
    "variable_name",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE_VARIABLE = "WFG_ENV_FILE"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

# Read from the process environment by someone else; documented in `.env.example`.
THIRD_PARTY_VARIABLES: dict[str, str] = {
    "OPENAI_API_KEY": "LiteLLM, through config.yaml's os.environ/OPENAI_API_KEY",
    "ANTHROPIC_API_KEY": "LiteLLM, through config.yaml's os.environ/ANTHROPIC_API_KEY",
    "GEMINI_API_KEY": "LiteLLM, through config.yaml's os.environ/GEMINI_API_KEY",
    "OPENROUTER_API_KEY": "LiteLLM, through config.yaml's os.environ/OPENROUTER_API_KEY",
    "OPENAI_API_BASE": "LiteLLM, through config.yaml's os.environ/OPENAI_API_BASE",
    "ANTHROPIC_API_BASE": "LiteLLM, through config.yaml's os.environ/ANTHROPIC_API_BASE",
    "GEMINI_API_BASE": "LiteLLM, through config.yaml's os.environ/GEMINI_API_BASE",
    "OPENROUTER_API_BASE": "LiteLLM, through config.yaml's os.environ/OPENROUTER_API_BASE",
    "LITELLM_LOCAL_MODEL_COST_MAP": "LiteLLM at import (the gateway sets it to True)",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "LiteLLM at import (the gateway sets it)",
    "JSON_LOGS": "LiteLLM at import (the gateway removes it)",
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client at import; our /metrics and the "
    "gateway's start read the same environment value so they agree with it",
    "POSTGRES_PASSWORD": "deploy/compose.yaml (builds DATABASE_URL from it)",
}


class InvalidSettings(SystemExit):
    """A variable has a value we refuse; the message names each one. A SystemExit, so a
    server stops with that one line (status 1); `gateway-admin` prefixes it as its errors."""


# from_env(mapping) reads this mapping instead of the environment and `.env`.
_MAPPING: ContextVar[Mapping[str, str] | None] = ContextVar("settings_mapping", default=None)


class _MappingSource(EnvSettingsSource):
    """The environment source, over a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], mapping: Mapping[str, str]) -> None:
        self._mapping = mapping
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name: value for name, value in self._mapping.items() if value != ""}


def _var(*names: str) -> Any:
    return AliasChoices(*names) if len(names) > 1 else names[0]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        case_sensitive=True,
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    # Data stores. Field order matters: a default may use the fields above it.
    var_dir: Path = Field(default=PROJECT_ROOT / "var", validation_alias=_var("WFG_VAR_DIR"))
    database_url: str = Field(
        default_factory=lambda data: f"sqlite:///{data.get('var_dir', '.')}/workforce.db",
        validation_alias=_var("WFG_DATABASE_URL", "DATABASE_URL"),
    )
    redis_url: str | None = Field(default=None, validation_alias=_var("REDIS_URL"))
    config_path: Path = Field(
        default=PROJECT_ROOT / "config.yaml", validation_alias=_var("WFG_CONFIG")
    )
    environment: str = Field(default="development", validation_alias=_var("WFG_ENV"))
    # Processes
    gateway_host: str = Field(default="127.0.0.1", validation_alias=_var("GATEWAY_HOST"))
    gateway_port: int = Field(default=4000, validation_alias=_var("GATEWAY_PORT"))
    gateway_workers: int = Field(default=1, validation_alias=_var("GATEWAY_WORKERS"))
    portal_host: str = Field(default="127.0.0.1", validation_alias=_var("PORTAL_HOST"))
    portal_port: int = Field(default=8080, validation_alias=_var("PORTAL_PORT"))
    portal_workers: int = Field(default=1, validation_alias=_var("PORTAL_WORKERS"))
    # Proxies whose X-Forwarded-For the portal believes (comma-separated, `*` for any).
    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1", validation_alias=_var("FORWARDED_ALLOW_IPS")
    )
    gateway_public_url: str = Field(
        default_factory=lambda data: f"http://localhost:{data.get('gateway_port', 4000)}",
        validation_alias=_var("GATEWAY_PUBLIC_URL"),
    )
    portal_public_url: str = Field(
        default_factory=lambda data: f"http://localhost:{data.get('portal_port', 8080)}",
        validation_alias=_var("PORTAL_PUBLIC_URL"),
    )
    # Mail: smtp[s]://user:pass@host:port[?starttls=true]; unset: .eml files in var/outbox
    smtp_url: str | None = Field(default=None, validation_alias=_var("SMTP_URL"))
    mail_from: str = Field(
        default="WorkForce Gateway <no-reply@localhost>", validation_alias=_var("MAIL_FROM")
    )
    # Stripe (billing). Unset secret key: billing pages say billing is not configured.
    stripe_secret_key: str | None = Field(
        default=None, repr=False, validation_alias=_var("STRIPE_SECRET_KEY")
    )
    stripe_webhook_secret: str | None = Field(
        default=None, repr=False, validation_alias=_var("STRIPE_WEBHOOK_SECRET")
    )
    # tests/staging: a Stripe-compatible API on loopback
    stripe_api_base: str | None = Field(default=None, validation_alias=_var("STRIPE_API_BASE"))
    # Operations: logs, metrics, auth cache, shutdown.
    log_level: str = Field(default="info", validation_alias=_var("LOG_LEVEL"))
    log_format: str = Field(  # "json" (the default with WFG_ENV=production) or "text"
        default_factory=lambda data: "json" if data.get("environment") == "production" else "text",
        validation_alias=_var("LOG_FORMAT"),
    )
    # Level of LiteLLM's own loggers; an unknown name means WARNING (as LiteLLM does).
    litellm_log_level: str = Field(default="WARNING", validation_alias=_var("LITELLM_LOG"))
    # `Authorization: Bearer <METRICS_TOKEN>` on /metrics when set.
    metrics_token: str | None = Field(
        default=None, repr=False, validation_alias=_var("METRICS_TOKEN")
    )
    auth_cache_ttl_seconds: int = Field(  # revocation invalidates at once
        default=30, validation_alias=_var("AUTH_CACHE_TTL_SECONDS")
    )
    # SIGTERM: wait this long for open requests, then this long for their usage to be written
    gateway_graceful_seconds: int = Field(
        default=30, validation_alias=_var("GATEWAY_GRACEFUL_SECONDS")
    )
    gateway_drain_seconds: int = Field(default=20, validation_alias=_var("GATEWAY_DRAIN_SECONDS"))
    # Benchmarks only: fast paths replaced by their library path (gateway_plugins/fast_paths.py)
    fast_paths_off: str = Field(default="", validation_alias=_var("WFG_FAST_PATHS_OFF"))
    # Benchmarks only: LiteLLM speed patches left out (gateway_plugins/bridge_switches.py)
    bridge_without: str = Field(default="", validation_alias=_var("WFG_BRIDGE_WITHOUT"))
    # Benchmarks only: long streams' short-call priority left out (gateway_plugins/fairness.py)
    fairness_off: str = Field(default="", validation_alias=_var("WFG_FAIRNESS_OFF"))

    @field_validator("gateway_port", "portal_port", mode="before")
    @classmethod
    def _port(cls, raw: Any, info: ValidationInfo) -> int:
        name = variable_name(info.field_name)
        port = _whole_number(raw, name, "a port number")
        if not 0 < port < 65536:
            raise ValueError(f"{name} must be between 1 and 65535, got {port}")
        return port

    @field_validator(
        "gateway_workers",
        "portal_workers",
        "auth_cache_ttl_seconds",
        "gateway_graceful_seconds",
        "gateway_drain_seconds",
        mode="before",
    )
    @classmethod
    def _positive(cls, raw: Any, info: ValidationInfo) -> int:
        name = variable_name(info.field_name)
        value = _whole_number(raw, name, "a whole number")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, raw: Any) -> str:
        value = str(raw).lower()
        if value not in ("json", "text"):
            raise ValueError(f"LOG_FORMAT must be json or text, got {value!r}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, raw: Any) -> str:
        value = str(raw).lower()
        if value not in LOG_LEVELS:
            raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
        return value

    @field_validator("litellm_log_level", mode="before")
    @classmethod
    def _litellm_level(cls, raw: Any) -> str:
        value = str(raw).upper()
        return value if value in logging.getLevelNamesMapping() else "WARNING"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        mapping = _MAPPING.get()
        if mapping is not None:
            return (init_settings, _MappingSource(settings_cls, mapping))
        env_file = os.environ.get(ENV_FILE_VARIABLE, ".env") or None
        return (init_settings, env_settings, DotEnvSettingsSource(settings_cls, env_file=env_file))

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def spool_dir(self) -> Path:
        return self.var_dir / "spool"

    @property
    def outbox_dir(self) -> Path:
        """Where mail goes as .eml files when no SMTP_URL is set."""
        return self.var_dir / "outbox"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` alone (tests), or with no argument from the environment and
        the `.env` file. Raises InvalidSettings (a SystemExit) naming every bad variable."""
        token = _MAPPING.set(None if env is None else dict(env))
        try:
            return cls()
        except ValidationError as error:
            raise InvalidSettings(_describe(error)) from None
        finally:
            _MAPPING.reset(token)


def variable_name(field: str | None) -> str:
    """The environment variable of a field (the first, where there are several)."""
    alias = Settings.model_fields[field or ""].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return first if isinstance(first, str) else str(field)
    return alias if isinstance(alias, str) else str(field)


def environment_variables() -> dict[str, str]:
    """Every variable Settings reads -> the field it sets."""
    names: dict[str, str] = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        names.update({choice: field for choice in choices if isinstance(choice, str)})
    return names


def _whole_number(raw: Any, name: str, what: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None


def _describe(error: ValidationError) -> str:
    messages = []
    for problem in error.errors():
        if problem["type"] == "default_factory_not_called":
            continue  # a default derived from a bad value: that value is named already
        cause = problem.get("ctx", {}).get("error")
        if isinstance(cause, ValueError):
            messages.append(str(cause))
        else:
            where = str(problem["loc"][0]) if problem["loc"] else ""
            name = variable_name(where) if where in Settings.model_fields else where
            messages.append(f"{name}: {problem['msg']}")
    return "; ".join(messages)


@cache
def get_settings() -> Settings:
    """The process's settings (entry points only; pass them down from there)."""
    return Settings.from_env()
