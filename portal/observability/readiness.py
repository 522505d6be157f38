"""Readiness: can this process serve a request right now? The database answers, and
Redis too when it is configured (rate limits and the auth cache live there). Liveness
(`/healthz`) checks neither: a dependency outage must not get healthy processes killed.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from sqlalchemy import text

from portal.db import Database

__all__ = ["CHECK_TIMEOUT_SECONDS", "check_dependencies"]

CHECK_TIMEOUT_SECONDS = 2.0


async def check_dependencies(
    database: Database, redis: aioredis.Redis | None
) -> tuple[bool, dict[str, str]]:
    """(ready, {"database": "ok" | error class, "redis": ...}); only class names, since
    a driver's error text can name hosts or credentials."""
    checks = {"database": _database(database)}
    if redis is not None:
        checks["redis"] = _redis(redis)
    results = await asyncio.gather(*checks.values())
    report = dict(zip(checks, results, strict=True))
    return all(value == "ok" for value in report.values()), report


async def _database(database: Database) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), database.session() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        return type(exc).__name__
    return "ok"


async def _redis(client: aioredis.Redis) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await client.ping()
    except Exception as exc:
        return type(exc).__name__
    return "ok"
