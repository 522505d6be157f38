"""Checks of how the services are deployed (environment), beside config.yaml's own.

With `WFG_ENV=production` the services refuse to start on anything unsafe, and say every
reason at once: `production_problems` is the one list, called by the portal's start
(`portal.web.server`), the gateway's start and `gateway-admin config check`
(`refuse_unsafe_production` raises SystemExit with the message).

Rate-limit counters and the auth cache are shared through Redis. Without `REDIS_URL`
each gateway process keeps its own counters, so `GATEWAY_WORKERS` > 1 would give every
user that many times their plan's limits: `gateway-admin config check` refuses it and
the gateway warns at start. Several single-worker instances without Redis cannot be
seen from here; in production a missing `REDIS_URL` is therefore a warning too.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from portal.config.smtp import parse_smtp_url
from portal.settings import Settings

__all__ = [
    "SERVICES",
    "deployment_errors",
    "production_problems",
    "refusal_message",
    "refuse_unsafe_production",
    "shared_state_errors",
    "shared_state_problems",
    "shared_state_warnings",
]

SERVICES = ("gateway", "portal")
MIN_METRICS_TOKEN_LENGTH = 16

# Provider keys are LiteLLM's (config.yaml's os.environ/...): read from the environment.
_PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY")
# What example files and tutorials put where a secret belongs.
_PLACEHOLDER_MARKS = ("replace_me", "replace-me", "changeme", "change_me", "change-me")
_DEFAULT_PASSWORDS = {
    "admin", "changeit", "example", "password", "postgres", "redis", "secret", "test",
    "workforce", "xxx",
}  # fmt: skip


def shared_state_errors(settings: Settings) -> list[str]:
    if settings.gateway_workers > 1 and not settings.redis_url:
        return [
            f"GATEWAY_WORKERS={settings.gateway_workers} needs REDIS_URL: without Redis every "
            "worker counts rate limits on its own (a user would get "
            f"{settings.gateway_workers}x the plan's limits); set REDIS_URL or use 1 worker"
        ]
    return []


def shared_state_warnings(settings: Settings, env: Mapping[str, str] | None = None) -> list[str]:
    # PROMETHEUS_MULTIPROC_DIR is prometheus_client's: read where it reads it.
    env = os.environ if env is None else env
    warnings = []
    if settings.is_production and not settings.redis_url:
        warnings.append(
            "REDIS_URL is not set: run a single gateway instance with one worker, "
            "or rate limits multiply by the number of instances"
        )
    if settings.gateway_workers > 1 and not env.get("PROMETHEUS_MULTIPROC_DIR"):
        warnings.append(
            "GATEWAY_WORKERS > 1 without PROMETHEUS_MULTIPROC_DIR: /metrics shows only "
            "the worker that answers the scrape"
        )
    return warnings


def shared_state_problems(settings: Settings) -> list[str]:
    """Everything the gateway warns about at start."""
    return shared_state_errors(settings) + shared_state_warnings(settings)


def production_problems(
    settings: Settings,
    env: Mapping[str, str] | None = None,
    *,
    services: Collection[str] = SERVICES,
) -> list[str]:
    """Every reason `services` must not start in production; [] outside production.

    Names variables, never their values. `env` holds the provider keys (read by LiteLLM
    from the process environment; default `os.environ`)."""
    if not settings.is_production:
        return []
    env = os.environ if env is None else env
    problems = []
    if settings.database_url.startswith("sqlite"):
        problems.append(
            "the database is SQLite: set DATABASE_URL to PostgreSQL (SQLite is for one "
            "process trying it out; it has no backups, replicas or concurrent writers)"
        )
    if "portal" in services:
        problems += _mail_problems(settings)
        if settings.stripe_secret_key and not settings.stripe_webhook_secret:
            problems.append(
                "STRIPE_SECRET_KEY is set without STRIPE_WEBHOOK_SECRET: Stripe's events "
                "could not be verified, so no payment would ever become credits"
            )
    problems += _default_secrets(settings, env)
    if "gateway" in services:
        problems += shared_state_errors(settings)
    metrics_token = settings.metrics_token or ""
    if not metrics_token:
        problems.append(
            "METRICS_TOKEN is not set: /metrics would answer anyone; set it to a long "
            "random value and give it to your Prometheus as a bearer token"
        )
    elif len(metrics_token) < MIN_METRICS_TOKEN_LENGTH:
        problems.append(
            f"METRICS_TOKEN is shorter than {MIN_METRICS_TOKEN_LENGTH} characters: "
            "use a long random value (e.g. `openssl rand -hex 32`)"
        )
    return problems


def deployment_errors(
    settings: Settings,
    env: Mapping[str, str] | None = None,
    *,
    services: Collection[str] = SERVICES,
) -> list[str]:
    """What `gateway-admin config check` refuses: the production list in production, and
    in any environment more than one gateway worker without Redis."""
    if settings.is_production:
        return production_problems(settings, env, services=services)
    return shared_state_errors(settings) if "gateway" in services else []


def refusal_message(problems: list[str]) -> str:
    """One line naming every problem (the CLI reports errors in one line)."""
    listed = "; ".join(f"({number}) {problem}" for number, problem in enumerate(problems, 1))
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    return f"WFG_ENV=production refuses to start, {count}: {listed}"


def refuse_unsafe_production(
    settings: Settings,
    env: Mapping[str, str] | None = None,
    *,
    services: Collection[str] = SERVICES,
) -> None:
    """Call first thing at a service's start: exits (status 1) with the list of problems."""
    if problems := production_problems(settings, env, services=services):
        raise SystemExit(refusal_message(problems))


def _mail_problems(settings: Settings) -> list[str]:
    if not settings.smtp_url:
        return [
            "SMTP_URL is not set: verification and password-reset mail would only be "
            "written to the outbox directory (a development aid) and never reach anyone"
        ]
    try:
        parse_smtp_url(settings.smtp_url)
    except ValueError:
        return ["SMTP_URL is not an smtp:// or smtps:// URL with a host"]
    return []


def _default_secrets(settings: Settings, env: Mapping[str, str]) -> list[str]:
    # Variables that hold a secret, or a URL that may carry one as its password.
    secrets = {
        "STRIPE_SECRET_KEY": settings.stripe_secret_key,
        "STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        **{name: env.get(name) for name in _PROVIDER_KEYS},
        "METRICS_TOKEN": settings.metrics_token,
    }
    urls = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SMTP_URL": settings.smtp_url,
    }
    found = [name for name, secret in secrets.items() if _is_placeholder(secret or "")]
    found += [name for name, url in urls.items() if _is_placeholder_url(url or "")]
    if not found:
        return []
    return [
        f"{', '.join(found)} still hold{'s' if len(found) == 1 else ''} a placeholder or "
        "default secret (REPLACE_ME, changeme, password…): set real values"
    ]


def _is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    if not lowered:
        return False
    return lowered in _DEFAULT_PASSWORDS or any(mark in lowered for mark in _PLACEHOLDER_MARKS)


def _is_placeholder_url(value: str) -> bool:
    if not value:
        return False
    lowered = value.lower()
    if any(mark in lowered for mark in _PLACEHOLDER_MARKS):
        return True
    try:
        password = urlsplit(value).password
    except ValueError:
        return False
    return password is not None and _is_placeholder(password)
