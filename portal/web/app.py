"""The portal's FastAPI application: a short list of routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from portal.db import open_database
from portal.settings import get_settings
from portal.web.routes import health

__all__ = ["create_app"]


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.database = open_database(get_settings().database_url)
        yield
        await app.state.database.dispose()

    app = FastAPI(title="WorkForce Gateway portal", lifespan=lifespan)
    app.include_router(health.router)
    return app
