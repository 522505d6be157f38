"""The portal's observability: `/metrics`, HTTP metrics by route, request ids.

`instrument(app, settings)` is the one line `portal.web.app.create_app` needs."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI

from portal.observability.exposition import metrics_router
from portal.observability.metrics import counter, histogram, status_class
from portal.observability.middleware import RequestContextMiddleware
from portal.settings import Settings

__all__ = ["instrument", "readiness_redis"]

REQUESTS = counter(
    "wfg_portal_requests_total", "Portal HTTP requests by route template and status.",
    ("route", "method", "status"),
)  # fmt: skip
DURATION = histogram(
    "wfg_portal_request_duration_seconds", "Portal HTTP request time by route template.",
    ("route",),
)  # fmt: skip
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def instrument(app: FastAPI, settings: Settings) -> None:
    app.include_router(metrics_router(settings.metrics_token))
    app.add_middleware(RequestContextMiddleware, on_done=_observe)


def _observe(scope: dict[str, Any], status: int, seconds: float) -> None:
    # The route *template* (e.g. /tokens/{token_id}), never the raw path: bounded.
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    method = scope.get("method", "")
    REQUESTS.labels(route, method if method in _METHODS else "other", status_class(status)).inc()
    DURATION.labels(route).observe(seconds)


def readiness_redis(app: FastAPI) -> aioredis.Redis | None:
    """A Redis client for `/readyz` when REDIS_URL is set (made once, on the app's loop)."""
    settings: Settings = app.state.settings
    url = settings.redis_url
    if not url:
        return None
    client = getattr(app.state, "readiness_redis", None)
    if client is None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        app.state.readiness_redis = client
    return client
