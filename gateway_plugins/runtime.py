"""Per-process state shared by the hooks, created on first use inside the worker.

The async engine opens connections lazily, on the worker's own event loop."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from portal.config import GatewayConfig, load_config
from portal.db import Database, open_database
from portal.settings import Settings, get_settings
from portal.tokens.auth_cache import AuthCache
from portal.usage.spool import Spool

__all__ = ["GatewayRuntime", "get_runtime"]


@dataclass
class GatewayRuntime:
    settings: Settings
    config: GatewayConfig
    database: Database
    spool: Spool
    auth_cache: AuthCache | None = None  # with REDIS_URL: token checks shared by instances


@cache
def get_runtime() -> GatewayRuntime:
    settings = get_settings()
    # Unpriced models do not stop the gateway; they are refused per request.
    config = load_config(settings.config_path, require_prices=False)
    return GatewayRuntime(
        settings=settings,
        config=config,
        database=open_database(settings.database_url),
        spool=Spool(settings.spool_dir),
        auth_cache=(
            AuthCache.from_url(settings.redis_url, settings.auth_cache_ttl_seconds)
            if settings.redis_url
            else None
        ),
    )
