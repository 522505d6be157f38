"""The `/metrics` endpoint, the same on both services.

Scrapers reach it on the service port. With `METRICS_TOKEN` set it answers only to
`Authorization: Bearer <METRICS_TOKEN>` (set it when the port is reachable from outside
and the ingress does not already keep `/metrics` private)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from portal.observability.metrics import render

__all__ = ["metrics_endpoint", "metrics_router"]

Endpoint = Callable[[Request], Awaitable[Response]]


def metrics_endpoint(metrics_token: str | None) -> Endpoint:
    """The `/metrics` handler; with a token, only `Bearer <token>` is answered."""
    expected = f"Bearer {metrics_token}".encode() if metrics_token else None

    async def metrics(request: Request) -> Response:
        if expected is not None:
            offered = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(offered, expected):
                return Response(status_code=401, headers={"www-authenticate": "Bearer"})
        body, content_type = render()
        return Response(body, media_type=content_type)

    return metrics


def metrics_router(metrics_token: str | None) -> APIRouter:
    router = APIRouter()
    router.add_api_route(
        "/metrics", metrics_endpoint(metrics_token), methods=["GET"], include_in_schema=False
    )
    return router
