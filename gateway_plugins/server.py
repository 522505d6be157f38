"""The gateway process: LiteLLM's proxy app with our plugins, served by uvicorn.

Run with `gateway-admin serve gateway` (or `python -m gateway_plugins.server`). Before
LiteLLM is imported, `DATABASE_URL` is moved to `WFG_DATABASE_URL`: LiteLLM's proxy
reads `DATABASE_URL` itself, refuses SQLite, and on PostgreSQL switches on its own
Prisma-backed features, which we do not use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from gateway_plugins.log_scrubbing import install_log_scrubbing
from gateway_plugins.runtime import GatewayRuntime, get_runtime
from portal.usage.settlement import FinishedCall, settle_call

__all__ = ["build_app", "main", "prepare_environment"]

log = logging.getLogger(__name__)
SPOOL_REPLAY_SECONDS = 30


def prepare_environment(env: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Environment LiteLLM must see (or must not) before it is imported."""
    if env.get("DATABASE_URL"):
        env["WFG_DATABASE_URL"] = env.pop("DATABASE_URL")
    env.pop("DIRECT_URL", None)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch prices from the internet
    env.setdefault("LITELLM_DONT_SHOW_FEEDBACK_BOX", "True")
    env.setdefault("DISABLE_SCHEMA_UPDATE", "True")
    # LiteLLM refuses to start without a master key. Our custom_auth decides every
    # request, so an operator need not set one: a random key nobody knows will do.
    if not env.get("LITELLM_MASTER_KEY"):
        env["LITELLM_MASTER_KEY"] = "sk-" + secrets.token_hex(32)
    from portal.settings import get_settings

    env["CONFIG_FILE_PATH"] = str(get_settings().config_path)
    env["LITELLM_WORKER_STARTUP_HOOKS"] = "gateway_plugins.server:on_worker_start"


def build_app() -> FastAPI:
    prepare_environment()
    install_log_scrubbing()
    import litellm
    from litellm.proxy.proxy_server import app

    litellm.suppress_debug_info = True
    _add_routes_first(app, _operational_router())
    return app


def _operational_router() -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    async def liveness() -> dict[str, str]:
        """The process serves requests; does not touch dependencies."""
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readiness() -> JSONResponse:
        """Ready to take traffic: the database answers."""
        try:
            async with get_runtime().database.session() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "database": type(exc).__name__}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    return router


def _add_routes_first(app: FastAPI, router: APIRouter) -> None:
    # LiteLLM registers broad routes; ours must match before them.
    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added


async def on_worker_start() -> None:
    """LiteLLM worker startup hook: settings that must hold after config load, and the
    background replay of spooled settlements."""
    import litellm

    litellm.set_verbose = False  # print()s request bodies; never allowed here
    litellm.turn_off_message_logging = True
    runtime = get_runtime()
    missing = sorted(runtime.config.prices.unpriced)
    if missing:
        log.error("models with no price are refused until priced: %s", ", ".join(missing))
    task = asyncio.create_task(_replay_spool_forever(runtime))
    _background_tasks.add(task)


_background_tasks: set[asyncio.Task[None]] = set()


async def _replay_spool_forever(runtime: GatewayRuntime) -> None:
    async def settle(call: FinishedCall) -> None:
        async with runtime.database.transaction() as session:
            await settle_call(session, call)

    while True:
        with contextlib.suppress(Exception):
            replayed = await runtime.spool.replay(settle)
            if replayed:
                log.info("replayed %d spooled usage settlements", replayed)
        await asyncio.sleep(SPOOL_REPLAY_SECONDS)


def main() -> None:
    import uvicorn

    from portal.settings import get_settings

    prepare_environment()
    settings = get_settings()
    workers = int(os.environ.get("GATEWAY_WORKERS", "1"))
    uvicorn.run(
        "gateway_plugins.server:app",
        factory=False,
        host=os.environ.get("GATEWAY_HOST", "127.0.0.1"),
        port=settings.gateway_port,
        workers=workers,
        timeout_graceful_shutdown=int(os.environ.get("GATEWAY_GRACEFUL_SECONDS", "30")),
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
    )


def __getattr__(name: str) -> FastAPI:
    # `gateway_plugins.server:app` builds the app on first access (uvicorn workers).
    if name == "app":
        application = build_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)


if __name__ == "__main__":
    main()
