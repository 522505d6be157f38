"""The portal's operator surface: `/healthz`, `/readyz` (database and Redis), `/metrics`
with HTTP metrics by route template, and request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from portal.db import Database
from portal.settings import Settings
from portal.web.app import create_app

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def settings(tmp_path: Path, database_url: str, redis_url: str | None = None) -> Settings:
    env = {"WFG_VAR_DIR": str(tmp_path / "var"), "DATABASE_URL": database_url}
    return Settings.from_env({**env, "REDIS_URL": redis_url} if redis_url else env)


@asynccontextmanager
async def portal(
    tmp_path: Path, db: Database, database_url: str, redis_url: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, as a server runs it: shutting down closes the Redis
    client its first /readyz made."""
    app = create_app(
        settings(tmp_path, database_url, redis_url), database=db, background_jobs=False
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://portal") as client,
    ):
        yield client


@pytest.fixture
async def client(
    tmp_path: Path, db: Database, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with portal(tmp_path, db, database_url) as http:
        yield http


def requests_total(body: str, route: str, status: str) -> float:
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "wfg_portal_requests_total" and sample.labels == {
                "route": route,
                "method": "GET" if route != "/tokens/{token_id}/revoke" else "POST",
                "status": status,
            }:
                return sample.value
    return 0.0


async def test_liveness_and_readiness_without_redis(client: httpx.AsyncClient) -> None:
    live, ready = await client.get("/healthz"), await client.get("/readyz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "database": "ok"})


@pytest.mark.redis
async def test_readiness_checks_redis_when_configured_redis(
    tmp_path: Path, db: Database, database_url: str, redis_url: str
) -> None:
    async with portal(tmp_path, db, database_url, redis_url) as up:
        ready = await up.get("/readyz")
    async with portal(tmp_path, db, database_url, UNREACHABLE_REDIS) as down:
        not_ready = await down.get("/readyz")
        live = await down.get("/healthz")

    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ok", "database": "ok", "redis": "ok"},
    )
    assert not_ready.status_code == 503
    assert not_ready.json()["status"] == "unavailable"
    assert not_ready.json()["redis"] != "ok" and not_ready.json()["database"] == "ok"
    assert live.status_code == 200  # liveness never depends on Redis


async def test_metrics_count_requests_by_route_template_never_by_raw_path(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/metrics")).text
    await client.get("/healthz")
    await client.get("/no-such-page/12345")
    await client.post("/tokens/some-token-id/revoke")  # refused (no session), still counted
    after = (await client.get("/metrics")).text

    assert requests_total(after, "/healthz", "200") - requests_total(before, "/healthz", "200") == 1
    assert (
        requests_total(after, "unmatched", "404") - requests_total(before, "unmatched", "404") == 1
    )
    assert "/no-such-page/12345" not in after and "some-token-id" not in after
    assert 'route="/tokens/{token_id}/revoke"' in after


async def test_metrics_can_require_a_bearer_token(
    tmp_path: Path, db: Database, database_url: str
) -> None:
    env = {"WFG_VAR_DIR": str(tmp_path / "var"), "DATABASE_URL": database_url}
    settings = Settings.from_env({**env, "METRICS_TOKEN": "scrape-secret"})
    app = create_app(settings, database=db, background_jobs=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://portal") as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (
            await client.get("/metrics", headers={"authorization": "Bearer nope"})
        ).status_code == 401
        allowed = await client.get("/metrics", headers={"authorization": "Bearer scrape-secret"})
    assert allowed.status_code == 200 and "wfg_portal_requests_total" in allowed.text


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    fresh = await client.get("/healthz")
    echoed = await client.get("/healthz", headers={"x-request-id": "lb-0123456789abcdef"})
    refused = await client.get("/healthz", headers={"x-request-id": "bad id\twith <junk>"})

    assert len(fresh.headers["x-request-id"]) == 32
    assert echoed.headers["x-request-id"] == "lb-0123456789abcdef"
    assert refused.headers["x-request-id"] != "bad id\twith <junk>"
