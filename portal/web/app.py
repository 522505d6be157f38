"""The portal's FastAPI application: a short list of routers.

Every router except health is included with the CSRF check, so no state-changing
request reaches a route without this browser's token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from portal.accounts.gateway_cache import use_redis
from portal.credits import alerts
from portal.credits.low_balance import threshold_units
from portal.db import Database, open_database
from portal.email.service import Mailer, mailer_from_settings
from portal.jobs.balance_alerts import AlertJob
from portal.observability import portal as observability
from portal.settings import Settings, get_settings
from portal.web.cookies import CookiePolicy
from portal.web.deps import require_csrf
from portal.web.errors import install_error_handlers
from portal.web.middleware import BodySizeLimit, BrowserCookie, SecurityHeaders
from portal.web.routes import (
    account,
    api,
    assets,
    auth,
    billing,
    connect,
    dashboard,
    health,
    tokens,
)

__all__ = ["create_app"]

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 256 * 1024


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    mailer: Mailer | None = None,
    background_jobs: bool = True,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = database is None
        if owned:
            app.state.database = open_database(settings.database_url)
            use_redis(app.state.database, settings.redis_url)
        alerts.set_low_balance_threshold(threshold_units(settings.config_path))
        jobs = asyncio.create_task(_alert_job(app).run()) if background_jobs else None
        try:
            yield
        finally:
            if jobs is not None:
                jobs.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await jobs
            billing_context = getattr(app.state, "billing", None)  # built on first use
            if billing_context is not None:
                await billing_context.aclose()
            readiness = getattr(app.state, "readiness_redis", None)  # made on first /readyz
            if readiness is not None:
                await readiness.aclose()
            if owned:
                await app.state.database.dispose()

    app = FastAPI(
        title="WorkForce Gateway portal",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads scripts from a CDN; the schema is enough
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.mailer = mailer or mailer_from_settings(settings)
    if database is not None:
        use_redis(database, settings.redis_url)  # the auth cache its services invalidate
        app.state.database = database

    csrf = [Depends(require_csrf)]
    app.include_router(health.router)
    app.include_router(assets.router)
    app.include_router(auth.router, dependencies=csrf)
    app.include_router(dashboard.router, dependencies=csrf)
    app.include_router(tokens.router, dependencies=csrf)
    app.include_router(account.router, dependencies=csrf)
    app.include_router(api.router, dependencies=csrf)
    app.include_router(connect.pages, dependencies=csrf)
    app.include_router(connect.token_api)  # no cookie: the app proves itself with PKCE
    app.include_router(billing.router)  # pages CSRF-checked, webhook signed
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    install_error_handlers(app)
    app.add_middleware(
        BrowserCookie, policy=CookiePolicy.for_public_url(settings.portal_public_url)
    )
    app.add_middleware(SecurityHeaders, hsts=settings.is_production)
    app.add_middleware(BodySizeLimit, limit=MAX_BODY_BYTES)
    observability.instrument(app, settings)  # /metrics, HTTP metrics, request ids (outermost)
    return app


def _alert_job(app: FastAPI) -> AlertJob:
    """Balance alerts: low-balance emails and auto top-ups (`portal.jobs.balance_alerts`)."""
    settings: Settings = app.state.settings
    return AlertJob(
        database=app.state.database,
        mailer=app.state.mailer,
        billing=lambda: billing.app_billing(app),
        dashboard_url=settings.portal_public_url.rstrip("/") + "/dashboard",
    )
