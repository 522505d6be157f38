"""The gateway's ASGI app: exactly the routes it meters, plus health and metrics.

`ROUTES` is the whole surface; `tests/gateway/test_routes.py` enumerates it and fails on
anything else. Every other path answers 404 with an OpenAI-style body; a wrong method on
a served path 405 with `Allow`. CORS (preflights included) only for the `/v1/` routes
and only for the origins config.yaml names (`cors`). LiteLLM
is used as a library (`gateway_plugins.litellm_bridge`), so none of its proxy routes
exist here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway_plugins import (
    background,
    calls,
    catalog,
    fairness,
    litellm_bridge,
    loop_lag,
    metrics,
    pipeline,
    warmup,
)
from gateway_plugins.auth import identify, presented_token
from gateway_plugins.cors import ApiCors
from gateway_plugins.count_tokens import count_tokens
from gateway_plugins.errors import (
    error_response,
    from_domain,
    method_not_allowed,
    not_found,
    service_unavailable,
)
from gateway_plugins.heap import freeze_startup_heap
from gateway_plugins.log_scrubbing import requests_may_arrive
from gateway_plugins.runtime import GatewayRuntime, open_runtime
from gateway_plugins.streaming import MeteredStream
from portal.credits import alerts, ledger
from portal.credits.units import format_units
from portal.errors import GatewayError, UnknownModel
from portal.observability.exposition import metrics_endpoint
from portal.observability.middleware import RequestContextMiddleware
from portal.observability.readiness import check_dependencies
from portal.settings import Settings
from portal.tokens import spending

__all__ = ["ROUTES", "build_app"]

log = logging.getLogger(__name__)

# (method, path) of every route; the test of the surface reads this list.
ROUTES: list[tuple[str, str]] = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id:path}"),
    ("GET", "/v1/credits"),
    ("GET", "/v1/calls/{call_id}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]


def _runtime(request: Request) -> GatewayRuntime:
    runtime: GatewayRuntime = request.app.state.runtime
    return runtime


def _metered(kind: str) -> Any:
    async def endpoint(request: Request) -> Response | MeteredStream:
        return await pipeline.handle(_runtime(request), request, kind)

    endpoint.__name__ = f"{kind}_endpoint"
    return endpoint


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def _authenticated(request: Request) -> Any:
    runtime = _runtime(request)
    return await identify(runtime, presented_token(request.headers))


def _model_cards(request: Request) -> dict[str, dict[str, Any]]:
    cards: dict[str, dict[str, Any]] = request.app.state.model_cards
    return cards


async def list_models(request: Request) -> Response:
    try:
        await _authenticated(request)
    except GatewayError as refused:
        return error_response(from_domain(refused))
    except Exception as exc:  # the database past its deadline, or its breaker open
        log.error("token check failed: %s", type(exc).__name__)
        return error_response(service_unavailable("The gateway"))
    return _json({"object": "list", "data": list(_model_cards(request).values())})


async def get_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    try:
        await _authenticated(request)
        card = _model_cards(request).get(model_id)
        if card is None:
            raise UnknownModel(f"The model {model_id[:200]!r} does not exist on this gateway.")
    except GatewayError as refused:
        return error_response(from_domain(refused))
    except Exception as exc:
        log.error("token check failed: %s", type(exc).__name__)
        return error_response(service_unavailable("The gateway"))
    return _json(card)


async def credits(request: Request) -> Response:
    """The caller's balance, so the desktop app can show what is left without a portal
    session: credits as a decimal string, and the integer units behind it. `low_balance`:
    the balance is below the operator's low-balance threshold (never with none set). For the
    calling token: its spending `limit` (null: none), what it `used` in the limit's
    period (calls in flight included), what `remaining` (null: no limit) and when it
    `resets_at` (null: never, or no limit)."""
    runtime = _runtime(request)
    try:
        identity = await _authenticated(request)
        async with runtime.postgres.call(), runtime.database.session() as session:
            balance, reserved = await ledger.balance_and_reserved(session, identity.user_id)
            token = await spending.spending_of(session, identity.token_id)
    except GatewayError as refused:
        return error_response(from_domain(refused))
    except Exception as exc:
        log.error("credits read failed: %s", type(exc).__name__)
        return error_response(service_unavailable("The balance"))
    return _json(
        {
            "object": "credits",
            "balance": format_units(balance),
            "balance_units": balance,
            "reserved_units": reserved,
            "available": format_units(balance - reserved),
            "available_units": balance - reserved,
            "plan": identity.plan,
            "low_balance": alerts.is_low_balance(balance),
            **_token_spending(token),
        }
    )


def _token_spending(token: spending.TokenSpending | None) -> dict[str, Any]:
    limit = token.limit_units if token else None
    used = token.used_units if token else 0
    remaining = token.remaining_units if token else None
    resets = token.resets_at if token else None
    return {
        "limit": format_units(limit) if limit is not None else None,
        "limit_units": limit,
        "limit_reset": token.reset.value if token and token.reset else None,
        "used": format_units(used),
        "used_units": used,
        "remaining": format_units(remaining) if remaining is not None else None,
        "remaining_units": remaining,
        "resets_at": resets.isoformat() if resets is not None else None,
    }


async def healthz(_request: Request) -> Response:
    """The process serves requests; touches no dependency and no upstream."""
    return _json({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready for traffic when the database answers. Redis is reported; while it is down
    the gateway still serves (each process enforces its share of the limits, see
    `rate_limits`), so it does not gate. `breakers`: each dependency's circuit breaker
    (`closed`, `open`, `half_open`) with its deadline (`gateway_plugins.breaker`)."""
    runtime = _runtime(request)
    _ready, report = await check_dependencies(runtime.database, runtime.redis)
    ready = report["database"] == "ok"
    body = {"status": "ok" if ready else "unavailable", **report, "breakers": runtime.breakers()}
    return _json(body, 200 if ready else 503)


async def _not_found(request: Request, _exc: Exception) -> Response:
    return error_response(not_found(request.url.path))


async def _not_allowed(request: Request, exc: Exception) -> Response:
    headers = getattr(exc, "headers", None) or {}
    allow = headers.get("Allow") or headers.get("allow")
    if getattr(exc, "status_code", None) != 405 or not allow:
        return error_response(not_found(request.url.path))
    allow = ", ".join(sorted(method.strip() for method in allow.split(",")))  # one order
    return error_response(method_not_allowed(request.method, allow), headers={"Allow": allow})


async def _count_tokens(request: Request) -> Response:
    return await count_tokens(_runtime(request), request)


async def _read_call(request: Request) -> Response:
    return await calls.read_call(_runtime(request), request)


def build_app(settings: Settings) -> Starlette:
    fairness.configure(settings.fairness_off)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = open_runtime(settings)
        metrics.configure(runtime.config.model_names)
        app.state.runtime = runtime
        app.state.model_cards = catalog.model_cards(runtime)  # /v1/models, built once
        missing = sorted(runtime.config.prices.unpriced)
        if missing:
            log.error("models with no price are refused until priced: %s", ", ".join(missing))
        loop_lag.share_the_gil()
        jobs = [*background.start(runtime), loop_lag.start()]
        if not litellm_bridge.run_request_setup_inline(asyncio.get_running_loop(), runtime.router):
            log.info("LiteLLM's request set-up runs in threads: a provider may do I/O there")
        warmup.import_lazy_modules()
        freeze_startup_heap()
        requests_may_arrive()  # from here on, LiteLLM's log text is withheld
        imports = warmup.watch_imports()
        imports.ready()
        try:
            yield
        finally:
            imports.report()
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            await runtime.inflight.drain(settings.gateway_drain_seconds)
            await runtime.close()

    handlers = {
        "/v1/chat/completions": _metered("chat"),
        "/v1/completions": _metered("text"),
        "/v1/messages": _metered("messages"),
        "/v1/messages/count_tokens": _count_tokens,
        "/v1/responses": _metered("responses"),
        "/v1/embeddings": _metered("embeddings"),
        "/v1/models": list_models,
        "/v1/models/{model_id:path}": get_model,
        "/v1/credits": credits,
        "/v1/calls/{call_id}": _read_call,
        "/healthz": healthz,
        "/readyz": readyz,
        "/metrics": metrics_endpoint(settings.metrics_token),
    }
    routes = [Route(path, handlers[path], methods=[method]) for method, path in ROUTES]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_allowed, HTTPException: _not_allowed},
    )
    # Starlette would answer `/healthz/` or `/v1/chat/completions/` with a redirect to the
    # route; off the list means 404, with no hint of what lies nearby.
    app.router.redirect_slashes = False
    app.add_middleware(ApiCors)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(fairness.CountRequests)  # outermost: every request counted
    return app
