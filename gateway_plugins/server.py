"""The gateway process: LiteLLM's proxy app with our plugins, served by uvicorn.

Run with `gateway-admin serve gateway` (or `python -m gateway_plugins.server`). Before
LiteLLM is imported, `DATABASE_URL` is moved to `WFG_DATABASE_URL`: LiteLLM's proxy
reads `DATABASE_URL` itself, refuses SQLite, and on PostgreSQL switches on its own
Prisma-backed features, which we do not use.

Around LiteLLM's app: `/healthz`, `/readyz` (database and Redis) and `/metrics` routes, a
request-id middleware, our log format for LiteLLM's loggers, and a lifespan wrapper that
puts the rate limiter ahead of the credit reservation once LiteLLM has started and, on
shutdown, waits for the usage of answered calls to be written (`shutdown.inflight`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.config
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from gateway_plugins.log_scrubbing import install_log_scrubbing, requests_may_arrive
from gateway_plugins.runtime import GatewayRuntime, get_runtime
from portal.config.deployment import shared_state_problems
from portal.observability.exposition import metrics_router
from portal.observability.logging import logging_config, route_litellm_logs
from portal.observability.middleware import RequestContextMiddleware
from portal.observability.readiness import check_dependencies
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
    # LiteLLM's JSON_LOGS mode formats uncaught exceptions around the log-record factory,
    # message (and so content) included; our LOG_FORMAT=json replaces it.
    env.pop("JSON_LOGS", None)
    # Count TPM from actual usage, not a second tokenizer pass (see rate_limits).
    env.setdefault("LITELLM_TPM_TOKEN_RESERVATION_ENABLED", "false")
    # LiteLLM refuses to start without a master key. Our custom_auth decides every
    # request, so an operator need not set one: a random key nobody knows will do.
    if not env.get("LITELLM_MASTER_KEY"):
        env["LITELLM_MASTER_KEY"] = "sk-" + secrets.token_hex(32)
    from portal.settings import get_settings

    env["CONFIG_FILE_PATH"] = str(get_settings().config_path)


def build_app() -> FastAPI:
    prepare_environment()
    install_log_scrubbing()
    import litellm

    route_litellm_logs()  # before the proxy's import logs anything in LiteLLM's format
    _fail_fast_on_missing_otel_sdk()
    from litellm.proxy.proxy_server import app

    litellm.suppress_debug_info = True
    _classify_errors_without_prisma()
    _add_routes_first(app, _operational_router())
    app.add_middleware(RequestContextMiddleware)
    _wrap_lifespan(app)
    return app


def _fail_fast_on_missing_otel_sdk() -> None:
    """LiteLLM's auth tries `litellm.integrations.otel.logger` on every request (best
    effort, for tracing we do not use). Without opentelemetry-sdk installed that import
    fails, so Python never caches the module and re-reads and re-compiles its source each
    time: measured at about a third of the gateway's CPU. Marking it absent makes the
    same ImportError immediate."""
    import importlib.util
    import sys

    if importlib.util.find_spec("opentelemetry.sdk") is None:
        sys.modules.setdefault("litellm.integrations.otel.logger", None)  # type: ignore[arg-type]


def _classify_errors_without_prisma() -> None:
    """LiteLLM asks "is this a database outage?" about every error it turns into a
    response, and answers by importing `prisma`, which we do not install (no LiteLLM
    database). The import then fails inside the error handler itself, so any error
    LiteLLM raises before our `custom_auth` (e.g. its refusal of a body parameter such
    as `input_cost_per_token`) or that escapes a route became a text/plain 500 instead
    of an OpenAI-style JSON error. With no LiteLLM database, no error is its outage."""
    import importlib.util

    if importlib.util.find_spec("prisma") is not None:
        return
    from litellm.proxy.db.exception_handler import PrismaDBExceptionHandler

    def is_database_service_unavailable_error(_error: Exception) -> bool:
        return False

    PrismaDBExceptionHandler.is_database_service_unavailable_error = staticmethod(  # type: ignore[method-assign]
        is_database_service_unavailable_error
    )


def _operational_router() -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    async def liveness() -> dict[str, str]:
        """The process serves requests; does not touch dependencies."""
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readiness() -> JSONResponse:
        """Ready to take traffic: the database answers, and Redis when configured."""
        runtime = get_runtime()
        redis = runtime.auth_cache.client if runtime.auth_cache is not None else None
        ready, report = await check_dependencies(runtime.database, redis)
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", **report},
            status_code=200 if ready else 503,
        )

    router.include_router(metrics_router())
    return router


def _add_routes_first(app: FastAPI, router: APIRouter) -> None:
    # LiteLLM registers broad routes; ours must match before them.
    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added


def _wrap_lifespan(app: FastAPI) -> None:
    """Run our start-up after LiteLLM's and our shutdown before LiteLLM tears down."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with inner(application) as state:
            _after_proxy_start()
            try:
                yield state
            finally:
                await _before_proxy_stop()

    app.router.lifespan_context = lifespan


def _after_proxy_start() -> None:
    import litellm

    from gateway_plugins.rate_limits import require_shared_limiter, run_limiter_before_reservation

    runtime = get_runtime()
    # After config.yaml's litellm_settings were applied, so an operator cannot undo them:
    litellm.set_verbose = False  # print()s request bodies
    litellm.turn_off_message_logging = True
    # LiteLLM guards /metrics with custom_auth (a gateway token); ours has METRICS_TOKEN.
    litellm.require_auth_for_metrics_endpoint = False
    run_limiter_before_reservation()
    require_shared_limiter(runtime.settings.redis_url)
    missing = sorted(runtime.config.prices.unpriced)
    if missing:
        log.error("models with no price are refused until priced: %s", ", ".join(missing))
    _background_tasks.add(asyncio.create_task(_replay_spool_forever(runtime)))
    requests_may_arrive()  # from here on, LiteLLM's log text is withheld


async def _before_proxy_stop() -> None:
    from gateway_plugins.shutdown import inflight

    runtime = get_runtime()
    for task in _background_tasks:
        task.cancel()
    await inflight.drain(runtime.settings.gateway_drain_seconds, runtime.spool)
    if runtime.auth_cache is not None:
        await runtime.auth_cache.close()
    await runtime.database.dispose()


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
    log_config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(log_config)
    for problem in shared_state_problems(settings):
        log.warning("%s", problem)
    _reset_metrics_directory()
    uvicorn.run(
        "gateway_plugins.server:app",
        factory=False,
        host=os.environ.get("GATEWAY_HOST", "127.0.0.1"),
        port=settings.gateway_port,
        workers=settings.gateway_workers,
        timeout_graceful_shutdown=settings.gateway_graceful_seconds,
        log_level=settings.log_level,
        log_config=log_config,
    )


def _reset_metrics_directory() -> None:
    """Samples of a previous run would be summed into this one's; start from empty."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink(missing_ok=True)


def __getattr__(name: str) -> FastAPI:
    # `gateway_plugins.server:app` builds the app on first access (uvicorn workers).
    if name == "app":
        application = build_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)


if __name__ == "__main__":
    main()
