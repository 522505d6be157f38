"""The HTTP side: Stripe's REST conventions around every resource handler, and the hosted
pages.

Every ``/v1`` request is authenticated (Bearer secret key), decoded from Stripe's
bracketed form encoding, logged in ``fake.requests``, answered as JSON with a
``Request-Id``, ``expand[]``-ed, and, for a POST with an ``Idempotency-Key``, replayed
on a repeat. Unknown URLs get Stripe's 404; a bug in the fake answers 500 and is kept
in ``fake.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import html
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from . import billing_portal, checkout, customers, disputes, invoices, payments, subscriptions
from .billing_portal import html_page
from .state import Ctx, Store
from .wire import (
    API_VERSION,
    ApiError,
    FakeStripeError,
    Obj,
    missing,
    money,
    new_id,
    parse_stripe_form,
)

if TYPE_CHECKING:
    from .fake import FakeStripe

__all__ = ["build_app"]

log = logging.getLogger(__name__)
Handler = Callable[[Store, Ctx], Obj]


def _retrieve_event(st: Store, ctx: Ctx) -> Obj:
    ev = st.events.get(ctx.path_params["id"])
    if ev is None:
        raise missing("event", ctx.path_params["id"])
    return ev


ROUTES: list[tuple[str, str, Handler]] = [
    *customers.ROUTES,
    *checkout.ROUTES,
    *billing_portal.ROUTES,
    *subscriptions.ROUTES,
    *invoices.ROUTES,
    *payments.ROUTES,
    *disputes.ROUTES,
    ("GET", "/v1/events/{id}", _retrieve_event),
]
# fields that hold an id, expandable into the object (collection in the Store)
_EXPANDABLE = {
    "customer": "customers",
    "subscription": "subscriptions",
    "invoice": "invoices",
    "latest_invoice": "invoices",
    "payment_intent": "payment_intents",
    "charge": "charges",
    "latest_charge": "charges",
    "payment_method": "payment_methods",
    "default_payment_method": "payment_methods",
}


def _unrecognized(st: Store, ctx: Ctx) -> Obj:
    raise ApiError(404, f"Unrecognized request URL ({ctx.method}: {ctx.path}).")


def _authenticate(fake: FakeStripe, request: Request) -> None:
    auth = request.headers.get("authorization", "")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not key:
        raise ApiError(401, "You did not provide an API key.")
    if not hmac.compare_digest(key, fake.secret_key):
        head = key[: key.index("_", key.index("_") + 1) + 1] if key.count("_") >= 2 else ""
        masked = head + "*" * max(len(key) - len(head) - 4, 0) + key[-4:]
        raise ApiError(401, f"Invalid API Key provided: {masked}")


def _expand(st: Store, obj: Any, path: list[str]) -> Any:
    """``obj`` with the id at ``path`` (dotted, ``data`` for a list's items) expanded."""
    if not path or obj is None:
        return obj
    head, rest = path[0], path[1:]
    if isinstance(obj, dict) and obj.get("object") in ("list", "search_result") and head == "data":
        obj["data"] = [_expand(st, x, rest) for x in obj["data"]]
        return obj
    if not isinstance(obj, dict):
        raise ApiError(400, f"This property cannot be expanded ({head}).", param="expand")
    if head == "line_items" and obj.get("object") == "checkout.session":
        obj["line_items"] = copy.deepcopy(checkout.line_items(st, obj["id"]))
    elif head in _EXPANDABLE and isinstance(obj.get(head), str):
        target = getattr(st, _EXPANDABLE[head]).get(obj[head])
        if target is not None:
            obj[head] = copy.deepcopy(target)
    elif not (head in obj and (head in _EXPANDABLE or (rest and isinstance(obj[head], dict)))):
        raise ApiError(400, f"This property cannot be expanded ({head}).", param="expand")
    if rest:
        obj[head] = _expand(st, obj[head], rest)
    return obj


def _dispatch(
    fake: FakeStripe, handler: Handler, request: Request, raw: str, request_id: str
) -> tuple[int, bytes, dict[str, str], list[Obj]]:
    method, path = request.method.upper(), request.url.path
    idem_key = request.headers.get("idempotency-key") if method == "POST" else None
    headers = {"Idempotency-Key": idem_key} if idem_key else {}
    ctx: Ctx | None = None
    try:
        _authenticate(fake, request)
        if idem_key and (cached := fake.idempotency.get(idem_key)) is not None:
            if cached[:3] != (method, path, raw):
                raise ApiError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                    type="idempotency_error",
                )
            return cached[3], cached[4], {**headers, "Idempotent-Replayed": "true"}, []
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        if method == "POST":
            pairs += parse_qsl(raw, keep_blank_values=True)
        params = parse_stripe_form(pairs)
        fake.requests.append((method, path, params))
        ctx = Ctx(method, path, params, dict(request.path_params), request_id, idem_key)
        result = handler(fake, ctx)
        expand = params.get("expand") or []
        for dotted in [expand] if isinstance(expand, str) else expand:
            result = _expand(fake, copy.deepcopy(result), str(dotted).split("."))
        status, body, events = 200, json.dumps(result, indent=2).encode(), ctx.events
    except ApiError as exc:  # what changed stays changed (a declined payment's events)
        status, body = exc.status, json.dumps(exc.body(request_id)).encode()
        events = ctx.events if ctx is not None else []
    except Exception as exc:  # a bug in the fake: answer like Stripe's 500, keep it
        log.exception("fake Stripe failed on %s %s", method, path)
        fake.errors.append(exc)
        err = ApiError(500, "An unknown error occurred", type="api_error")
        status, body, events = 500, json.dumps(err.body(request_id)).encode(), []
    if idem_key and status not in (401, 429, 500):
        fake.idempotency[idem_key] = (method, path, raw, status, body)
    return status, body, headers, events


def _api(fake: FakeStripe, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", "replace")
        request_id = new_id("req_", 14)
        with fake.lock:
            status, body, headers, events = _dispatch(fake, handler, request, raw, request_id)
        fake.deliver_later(fake.record(events))  # like Stripe: after the response is made
        headers["Request-Id"] = request_id
        headers["Stripe-Version"] = request.headers.get("stripe-version") or API_VERSION
        return Response(body, status, headers=headers, media_type="application/json")

    return endpoint


def _pay_form(fake: FakeStripe, s: Obj) -> Response:
    rows = "".join(
        f"<li>{html.escape(li['description'])} × {li['quantity']}: "
        f"{money(li['amount_total'], li['currency'])}</li>"
        for li in fake.session_items[s["id"]]
    )
    cancel = s["cancel_url"] and f'<a id="cancel" href="{html.escape(s["cancel_url"])}">Cancel</a>'
    return html_page(
        "Checkout",
        f"<h1>Pay WorkForce Gateway (test mode)</h1>"
        f'<p id="amount">{money(s["amount_total"], s["currency"])}</p><ul id="items">{rows}</ul>'
        f'<form method="post" action="/pay/{s["id"]}">'
        '<button id="pay" type="submit">Pay</button></form>'
        f"<p>{cancel or ''}</p>",
    )


async def _pay_page(fake: FakeStripe, request: Request) -> Response:
    """Checkout's hosted page: Pay completes the session, delivers its events (so our
    success page can already see the credits), then redirects to ``success_url``."""
    cs_id = request.path_params["id"]
    with fake.lock:
        s = fake.checkout_sessions.get(cs_id)
        if s is None:
            return html_page("Not found", "<h1>Something went wrong</h1>", 404)
        if s["status"] != "open":
            inactive = f"<h1>This Checkout Session is no longer active ({s['status']}).</h1>"
            return html_page("Checkout", inactive)
        if request.method == "GET":
            return _pay_form(fake, s)
        try:
            events = fake.record(checkout.complete(fake, cs_id, async_payment=False))
        except FakeStripeError as exc:
            return html_page("Checkout", f"<h1>{html.escape(str(exc))}</h1>", 409)
    done = asyncio.get_running_loop().create_future()
    fake.deliver_later(events, done)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done, fake.delivery_timeout * (len(events) + 1))
    if s["success_url"]:
        return RedirectResponse(s["success_url"].replace("{CHECKOUT_SESSION_ID}", cs_id), 303)
    return html_page("Checkout", '<h1 id="paid">Payment complete</h1>')


def build_app(fake: FakeStripe) -> Starlette:
    async def portal_page(request: Request) -> Response:
        return billing_portal.portal_page(fake, request)

    async def pay_page(request: Request) -> Response:
        return await _pay_page(fake, request)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        worker = asyncio.create_task(fake.delivery_worker())
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    routes = [Route(path, _api(fake, h), methods=[m]) for m, path, h in ROUTES]
    every = ["GET", "POST", "DELETE", "PUT", "PATCH"]
    routes += [
        Route("/v1/{rest:path}", _api(fake, _unrecognized), methods=every),
        Route("/pay/{id}", pay_page, methods=["GET", "POST"]),
        Route("/portal/{id}", portal_page, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
