"""Checks of how the services are deployed (environment), beside config.yaml's own.

Rate-limit counters and the auth cache are shared through Redis. Without `REDIS_URL`
each gateway process keeps its own counters, so `GATEWAY_WORKERS` > 1 would give every
user that many times their plan's limits: `gateway-admin config check` refuses it and
the gateway warns at start. Several single-worker instances without Redis cannot be
seen from here; in production a missing `REDIS_URL` is therefore a warning too.
"""

from __future__ import annotations

import os

from portal.settings import Settings

__all__ = ["shared_state_errors", "shared_state_problems", "shared_state_warnings"]


def shared_state_errors(settings: Settings) -> list[str]:
    if settings.gateway_workers > 1 and not settings.redis_url:
        return [
            f"GATEWAY_WORKERS={settings.gateway_workers} needs REDIS_URL: without Redis every "
            "worker counts rate limits on its own (a user would get "
            f"{settings.gateway_workers}x the plan's limits); set REDIS_URL or use 1 worker"
        ]
    return []


def shared_state_warnings(
    settings: Settings, env: dict[str, str] | os._Environ[str] = os.environ
) -> list[str]:
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
