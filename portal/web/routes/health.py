"""Liveness (the process answers) and readiness (the database answers, and Redis
when it is configured)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from portal.observability.portal import readiness_redis
from portal.observability.readiness import check_dependencies

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def liveness() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readiness(request: Request) -> JSONResponse:
    ready, report = await check_dependencies(
        request.app.state.database, readiness_redis(request.app)
    )
    status = {"status": "ok" if ready else "unavailable", **report}
    return JSONResponse(status, status_code=200 if ready else 503)
