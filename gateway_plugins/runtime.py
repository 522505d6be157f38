"""Per-process state of the gateway, built once at start (`open_runtime`) and closed at
shutdown: settings, config.yaml, the database, Redis, the Router, the limiter, the spool.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from sqlalchemy.exc import DataError, IntegrityError

from gateway_plugins import fast_paths, litellm_bridge
from gateway_plugins.breaker import Breaker, Budget, Guard
from gateway_plugins.inflight import InFlight
from gateway_plugins.litellm_bridge import Router
from gateway_plugins.rate_limits import RateLimiter
from gateway_plugins.targets import Target, targets_of
from portal.config import ConfigError
from portal.config.plugin_settings import DependencySettings, PlanLimits
from portal.credits import alerts
from portal.credits.pricing import PricedConfig, load_priced_config
from portal.credits.units import credits_to_units
from portal.db import Database, open_database
from portal.errors import GatewayError
from portal.settings import Settings
from portal.tokens.auth_cache import AuthCache
from portal.tokens.service import TokenIdentity
from portal.usage.spool import Spool

__all__ = ["GatewayRuntime", "open_runtime"]

log = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 5.0


def redis_client(url: str, timeout_seconds: float = REDIS_TIMEOUT_SECONDS) -> aioredis.Redis:
    """redis-py's client and pool for the limiter's scripts and the auth cache: one
    deadline per round trip (the gateway passes its per-call Redis budget; each call's
    uses together are held to that budget by `breaker.Budget`), not redis-py's default
    of three retries after it; a connection error (a connection Redis dropped, as after
    its restart) is retried once on a new one."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 1, (RedisConnectionError,)),
    )


@dataclass
class GatewayRuntime:
    settings: Settings
    config: PricedConfig
    database: Database
    spool: Spool
    router: Router
    limiter: RateLimiter
    redis: aioredis.Redis | None = None
    auth_cache: AuthCache | None = None
    inflight: InFlight = field(default_factory=InFlight)
    output_limits: dict[str, int] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    """Model group → the providers its calls may reach, and whether it embeds."""

    postgres: Guard = field(default_factory=lambda: _guard("database", DependencySettings()))
    """PostgreSQL's (or SQLite's) breaker and per-operation deadline."""
    redis_guard: Guard | None = None
    """Redis's breaker; each call spends at most `redis_budget()` on Redis."""

    def redis_budget(self) -> Budget | None:
        """A new call's Redis allowance (None without Redis)."""
        if self.redis_guard is None:
            return None
        return Budget(self.redis_guard, self.config.plugin.dependencies.redis_budget_seconds)

    def breakers(self) -> dict[str, dict[str, object]]:
        """Each dependency's breaker, as /readyz reports it."""
        guards = [self.postgres, *([self.redis_guard] if self.redis_guard else [])]
        return {guard.name: guard.report() for guard in guards}

    @property
    def deadline_seconds(self) -> int:
        """The request deadline, which is also how long a hold or a slot may live."""
        credits, timeouts = self.config.plugin.credits, self.config.plugin.timeouts
        return min(credits.reservation_ttl_seconds, timeouts.request_seconds)

    def max_output_tokens(self, model: Any) -> int:
        cap = self.config.plugin.limits.max_request_tokens
        return min(cap, self.output_limits.get(model, cap)) if isinstance(model, str) else cap

    def limits_for(self, identity: TokenIdentity) -> PlanLimits:
        return self.config.plugin.limits.for_plan(identity.plan)

    async def close(self) -> None:
        """Upstream clients, Redis, the database: each is
        closed even if closing one before it failed."""
        async with AsyncExitStack() as closing:  # callbacks run last-in, first-out
            closing.push_async_callback(self.database.dispose)
            if self.redis is not None:
                closing.push_async_callback(self.redis.aclose)
            await litellm_bridge.close_upstream_clients(self.router)


def database_outage(exc: BaseException) -> bool:
    """Whether a database operation's error means the database is not answering (counted
    by its breaker), rather than an answer: a refusal of ours (401, 402) or a statement
    the server rejected on its data."""
    answered = (GatewayError, IntegrityError, DataError, asyncpg.IntegrityConstraintViolationError)
    return not isinstance(exc, answered)


def redis_outage(exc: BaseException) -> bool:
    """Whether a Redis error means Redis is not answering (a script error is an answer)."""
    return not isinstance(exc, ResponseError)


def _guard(name: str, dependencies: DependencySettings) -> Guard:
    breaker = Breaker(
        name,
        failures=dependencies.breaker_failures,
        probe_seconds=dependencies.breaker_probe_seconds,
    )
    if name == "redis":
        return Guard(breaker, dependencies.redis_budget_seconds, redis_outage)
    return Guard(breaker, dependencies.database_seconds, database_outage)


def open_runtime(settings: Settings) -> GatewayRuntime:
    # Unpriced models do not stop the gateway; they are refused per request.
    config = load_priced_config(settings.config_path, require_prices=False)
    raw = config.raw
    if problems := litellm_bridge.config_problems(raw):
        raise ConfigError(problems)
    litellm_bridge.apply_litellm_settings(raw.get("litellm_settings") or {})
    router = litellm_bridge.build_router(raw["model_list"], raw.get("router_settings") or {})
    dependencies = config.plugin.dependencies
    redis = (
        redis_client(settings.redis_url, dependencies.redis_budget_seconds)
        if settings.redis_url
        else None
    )
    off = fast_paths.turned_off(settings.fast_paths_off)
    # A settlement that takes a balance below it writes a balance alert (the portal emails).
    alerts.set_low_balance_threshold(credits_to_units(config.plugin.credits.low_balance_credits))
    return GatewayRuntime(
        settings=settings,
        config=config,
        # All 20 kept: under load, overflow connections were opened and closed per call.
        # SQLite runs inline on the event loop (portal.db.sqlite_inline), no worker thread.
        database=open_database(
            settings.database_url,
            pool_size=20,
            max_overflow=0,
            pre_ping=False,
            inline_sqlite="inline_sqlite" not in off,
            by_driver="driver" not in off,
            deadline_seconds=dependencies.database_seconds,
        ),
        postgres=_guard("database", dependencies),
        redis_guard=_guard("redis", dependencies) if redis is not None else None,
        spool=Spool(settings.spool_dir),
        router=router,
        limiter=RateLimiter(redis, config.plugin.limits),
        redis=redis,
        auth_cache=(
            AuthCache(redis, settings.auth_cache_ttl_seconds) if redis is not None else None
        ),
        output_limits=litellm_bridge.output_limits(raw["model_list"]),
        targets=targets_of(raw),
    )
