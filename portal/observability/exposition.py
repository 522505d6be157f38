"""The `/metrics` endpoint, the same on both services.

Scrapers reach it on the service port. With `METRICS_TOKEN` set it answers only to
`Authorization: Bearer <METRICS_TOKEN>` (set it when the port is reachable from outside
and the ingress does not already keep `/metrics` private)."""

from __future__ import annotations

import hmac
import os

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from portal.observability.metrics import render

__all__ = ["metrics_endpoint", "metrics_router"]


async def metrics_endpoint(request: Request) -> Response:
    expected = os.environ.get("METRICS_TOKEN")
    if expected:
        offered = request.headers.get("authorization", "")
        if not hmac.compare_digest(offered.encode(), f"Bearer {expected}".encode()):
            return Response(status_code=401, headers={"www-authenticate": "Bearer"})
    body, content_type = render()
    return Response(body, media_type=content_type)


def metrics_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    return router
