"""A fake of Stripe's REST API on loopback, for the real ``stripe`` SDK (16.x).

It speaks Stripe's wire format: form-encoded request bodies with bracketed keys
(``line_items[0][price]``, ``metadata[user_id]``, ``expand[0]`` / ``expand[]``), Bearer
auth with one secret key, JSON objects with ``id``/``object``/``created``/``livemode``,
list objects, ``{"error": {...}}`` bodies with Stripe's status codes, ``Request-Id`` and
idempotent replays of POSTs. Webhook events are signed exactly as Stripe signs them.

Point the SDK at it, either way::

    fake = FakeStripe().start()
    client = stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.url})
    # or, module-level:
    stripe.api_key, stripe.api_base = fake.secret_key, fake.url   # see fake.use_globally()

What a person or Stripe itself would do is driven from the test: ``complete_checkout``,
``settle_async_payment``, ``renew_subscription``, ``fail_invoice_payment``, ``refund_charge``,
``dispute_charge`` ... each returns the events it created, in order. With ``webhook_url`` set
and ``auto_deliver`` on (the default), those events are also POSTed to ``webhook_url``:
synchronously from the calling thread for the helper methods (so the test can assert right
after the call), in the background on the fake's own loop for events caused by REST calls
(like Stripe, after the API response), and before the redirect for the hosted pay page.

Shapes follow the SDK's types for API version ``stripe.api_version`` (2026-10-28 for 16.1):
the billing period lives on subscription *items*; invoices point at their subscription via
``parent.subscription_details.subscription`` and at prices via
``lines.data[].pricing.price_details``. For older integrations the legacy fields
(``subscription.current_period_{start,end}``, ``invoice.subscription``,
``invoice.lines.data[].price``) are filled in as well.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import contextlib
import copy
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import socket
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

try:  # the API version the installed SDK pins; events carry it like Stripe's do
    import stripe as _stripe

    API_VERSION: str = _stripe.api_version
except Exception:  # pragma: no cover - stripe is a project dependency
    API_VERSION = "2026-10-28.endive"

__all__ = ["API_VERSION", "FakeStripe", "FakeStripeError", "parse_stripe_form", "sign_payload"]

log = logging.getLogger(__name__)

_ALNUM = string.ascii_letters + string.digits


def sign_payload(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload``: ``t=<ts>,v1=<hex HMAC-SHA256>``."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def parse_stripe_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Decode Stripe's bracketed form keys into nested dicts and lists.

    ``a[b][0][c]=1`` -> ``{"a": {"b": [{"c": "1"}]}}``; ``expand[]=x`` appends. Values stay
    strings (as on the wire); a dict whose keys are all digits becomes a list.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        m = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        parts = [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))] if m else [key]
        node = root
        for i, part in enumerate(parts):
            if part == "":
                part = str(len(node))
            if i == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return _listify(root)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _listify(v) for k, v in node.items()}
        if out and all(k.isdigit() for k in out):
            return [out[k] for k in sorted(out, key=int)]
        return out
    return node


class FakeStripeError(Exception):
    """A helper was asked for something Stripe would not do (unknown id, wrong state)."""


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = (
            status,
            message,
            type,
            code,
            param,
        )

    def body(self, request_id: str) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            err["param"] = self.param
        if self.status != 401:
            err["request_log_url"] = (
                f"https://dashboard.stripe.com/test/logs/{request_id}?t={int(time.time())}"
            )
        return {"error": err}


def _missing(noun: str, obj_id: str, param: str = "id", status: int = 404) -> _ApiError:
    return _ApiError(status, f"No such {noun}: '{obj_id}'", code="resource_missing", param=param)


@dataclass
class _Ctx:
    method: str
    path: str
    params: dict[str, Any]
    path_params: dict[str, str]
    request_id: str
    idempotency_key: str | None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def request_ref(self) -> dict[str, Any]:
        return {"id": self.request_id, "idempotency_key": self.idempotency_key}


# field name -> (collection, noun used in "No such ..." errors)
_EXPANDABLE: dict[str, tuple[str, str]] = {
    "customer": ("customers", "customer"),
    "subscription": ("subscriptions", "subscription"),
    "invoice": ("invoices", "invoice"),
    "latest_invoice": ("invoices", "invoice"),
    "payment_intent": ("payment_intents", "payment_intent"),
    "charge": ("charges", "charge"),
    "latest_charge": ("charges", "charge"),
    "payment_method": ("payment_methods", "PaymentMethod"),
    "default_payment_method": ("payment_methods", "PaymentMethod"),
    "price": ("prices", "price"),
    "product": ("products", "product"),
}


def _to_int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _ApiError(400, f"Invalid integer: {value}", param=param) from None


def _to_bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1"):
        return True
    if str(value).lower() in ("false", "0", ""):
        return False
    raise _ApiError(400, f"Invalid boolean: {value}", param=param)


def _metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise _ApiError(400, "Invalid object", param=param)
    return {str(k): str(v) for k, v in value.items()}


def _merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe's update semantics: keys merge, "" deletes a key, metadata="" clears all."""
    if update == "":
        return {}
    merged = dict(current)
    for k, v in _metadata(update).items():
        if v == "":
            merged.pop(k, None)
        else:
            merged[k] = v
    return merged


def _add_interval(ts: int, interval: str, count: int) -> int:
    dt = datetime.fromtimestamp(ts, UTC)
    if interval == "day":
        return int((dt + timedelta(days=count)).timestamp())
    if interval == "week":
        return int((dt + timedelta(weeks=count)).timestamp())
    months = count * (12 if interval == "year" else 1)
    m0 = dt.month - 1 + months
    year, month = dt.year + m0 // 12, m0 % 12 + 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return int(dt.replace(year=year, month=month, day=day).timestamp())


def _money(amount: int | None, currency: str | None) -> str:
    cur = (currency or "usd").lower()
    value = (amount or 0) / 100
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(cur)
    return f"{symbol}{value:,.2f}" if symbol else f"{value:,.2f} {cur.upper()}"


class FakeStripe:
    """In-memory Stripe on ``http://127.0.0.1:<free port>``; see the module docstring.

    State is plain dicts keyed by id (``customers``, ``checkout_sessions``, ``subscriptions``,
    ``invoices``, ``charges``, ``payment_intents``, ``payment_methods``, ``prices``, ``events``
    ...), safe to read from tests. ``deliveries`` logs webhook POSTs, ``requests`` logs API
    calls with their decoded params, ``errors`` keeps bugs of the fake itself (answered 500).
    Helper methods raise ``FakeStripeError`` for unknown ids or impossible transitions.
    """

    secret_key: str = "sk_test_fake"
    webhook_secret: str = "whsec_fake_2f0c4a8e5b7d4c1e9a3b6d8f0e2c4a6b"

    def __init__(
        self,
        *,
        secret_key: str | None = None,
        webhook_secret: str | None = None,
        webhook_url: str | None = None,
        auto_deliver: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        delivery_timeout: float = 10.0,
    ) -> None:
        if secret_key is not None:
            self.secret_key = secret_key
        if webhook_secret is not None:
            self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.auto_deliver = auto_deliver
        self.delivery_timeout = delivery_timeout
        self.host, self._port = host, port
        self.url = ""
        # card that the hosted page "enters"
        self.card_brand, self.card_last4 = "visa", "4242"

        self._lock = threading.RLock()
        self.customers: dict[str, dict[str, Any]] = {}
        self.checkout_sessions: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.invoice_payments: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.billing_portal_sessions: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.coupons: dict[str, dict[str, Any]] = {}
        self._discounts: dict[str, dict[str, Any]] = {}  # di_… -> {"coupon", "percent_off"}
        self.events: dict[str, dict[str, Any]] = {}
        # every webhook POST attempted: {"event_id", "type", "status_code", "error"}
        self.deliveries: list[dict[str, Any]] = []
        # every API request: (method, path, params) - handy for asserting what was sent
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        # unexpected exceptions inside the fake (they answer HTTP 500)
        self.errors: list[BaseException] = []

        self._session_items: dict[str, list[dict[str, Any]]] = {}
        self._session_extra: dict[str, dict[str, Any]] = {}
        self._sub_period_index: dict[str, int] = {}
        self._idempotency: dict[str, tuple[str, str, str, int, bytes, dict[str, str]]] = {}
        self._deleted_customers: set[str] = set()

        self._http: httpx.Client | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[list[dict[str, Any]], asyncio.Future[None] | None]]
        self._startup_error: BaseException | None = None
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeStripe:
        if self._thread is not None:
            return self
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP; without it every keep-alive request waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"fake-stripe:{port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"fake Stripe did not start: {self._startup_error!r}")
            time.sleep(0.005)
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            assert self._server is not None
            loop.run_until_complete(self._server.serve(sockets=[sock]))
        except BaseException as exc:  # surfaced by start()
            self._startup_error = exc
        finally:
            sock.close()
            loop.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._http is not None:
            self._http.close()
        self._server = self._thread = self._loop = self._http = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ SDK plumbing
    def client(self, **kwargs: Any) -> Any:
        """A ``stripe.StripeClient`` pointed at this fake (no network retries)."""
        import stripe

        kwargs.setdefault("max_network_retries", 0)
        return stripe.StripeClient(
            self.secret_key,
            base_addresses={
                "api": self.url,
                "files": self.url,
                "connect": self.url,
                "meter_events": self.url,
            },
            **kwargs,
        )

    @contextlib.contextmanager
    def use_globally(self) -> Iterator[FakeStripe]:
        """Point the module-level ``stripe`` configuration at the fake; restore on exit."""
        import stripe

        saved = (stripe.api_key, stripe.api_base, stripe.max_network_retries)
        stripe.api_key, stripe.api_base, stripe.max_network_retries = (
            self.secret_key,
            self.url,
            0,
        )
        try:
            yield self
        finally:
            stripe.api_key, stripe.api_base, stripe.max_network_retries = saved

    # --------------------------------------------------------------- utilities
    @staticmethod
    def now() -> int:
        return int(time.time())

    @staticmethod
    def _new_id(prefix: str, length: int = 24) -> str:
        return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))

    def _get(self, collection: str, obj_id: str) -> dict[str, Any]:
        obj = getattr(self, collection).get(obj_id)
        if obj is None:
            raise FakeStripeError(f"no {collection[:-1]} {obj_id!r}")
        return obj

    # ------------------------------------------------------------------ events
    def _event(
        self,
        type: str,
        obj: dict[str, Any],
        *,
        previous: dict[str, Any] | None = None,
        request: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(previous)
        return {
            "id": self._new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": request or {"id": None, "idempotency_key": None},
            "type": type,
        }

    def _record(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            for ev in events:
                self.events[ev["id"]] = ev
        return events

    def _auto(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record events; deliver them now when auto_deliver (helper methods, caller's thread)."""
        self._record(events)
        if self.auto_deliver and self.webhook_url:
            self.deliver_all(events)
        return events

    # --------------------------------------------------------------- delivery
    def _webhook_request(
        self, event: dict[str, Any], signature_secret: str | None, timestamp: int | None
    ) -> tuple[bytes, dict[str, str]]:
        payload = json.dumps(event, indent=2)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Accept": "*/*; q=0.5, application/xml",
            "Cache-Control": "no-cache",
            "Stripe-Signature": sign_payload(
                payload, signature_secret or self.webhook_secret, timestamp
            ),
        }
        return payload.encode(), headers

    def _note_delivery(
        self, event: dict[str, Any], status: int | None, error: str | None = None
    ) -> None:
        with self._lock:
            self.deliveries.append(
                {
                    "event_id": event["id"],
                    "type": event["type"],
                    "status_code": status,
                    "error": error,
                }
            )

    def deliver(
        self,
        event: dict[str, Any],
        *,
        signature_secret: str | None = None,
        timestamp: int | None = None,
        url: str | None = None,
    ) -> httpx.Response:
        """POST one event to ``url``/``webhook_url``, signed as Stripe signs (from this thread)."""
        target = url or self.webhook_url
        if not target:
            raise FakeStripeError("webhook_url is not set")
        body, headers = self._webhook_request(event, signature_secret, timestamp)
        with self._lock:  # one client per fake: creating one loads the CA bundle (slow)
            if self._http is None:
                self._http = httpx.Client(timeout=self.delivery_timeout)
            http = self._http
        try:
            resp = http.post(target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._note_delivery(event, None, repr(exc))
            raise
        self._note_delivery(event, resp.status_code)
        return resp

    def deliver_all(self, events: Iterable[dict[str, Any]]) -> list[httpx.Response]:
        return [self.deliver(ev) for ev in events]

    async def adeliver(
        self,
        event: dict[str, Any],
        *,
        signature_secret: str | None = None,
        timestamp: int | None = None,
        url: str | None = None,
    ) -> httpx.Response:
        """Async ``deliver``, for a receiver that runs on the caller's own event loop."""
        async with httpx.AsyncClient(timeout=self.delivery_timeout) as http:
            return await self._apost(http, event, signature_secret, timestamp, url)

    async def _apost(
        self,
        http: httpx.AsyncClient,
        event: dict[str, Any],
        signature_secret: str | None = None,
        timestamp: int | None = None,
        url: str | None = None,
    ) -> httpx.Response:
        target = url or self.webhook_url
        if not target:
            raise FakeStripeError("webhook_url is not set")
        body, headers = self._webhook_request(event, signature_secret, timestamp)
        try:
            resp = await http.post(target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._note_delivery(event, None, repr(exc))
            raise
        self._note_delivery(event, resp.status_code)
        return resp

    async def adeliver_all(self, events: Iterable[dict[str, Any]]) -> list[httpx.Response]:
        return [await self.adeliver(ev) for ev in events]

    async def _delivery_worker(self) -> None:
        async with httpx.AsyncClient(timeout=self.delivery_timeout) as http:
            while True:
                events, done = await self._queue.get()
                for ev in events:
                    if not (self.auto_deliver and self.webhook_url):
                        break
                    # failures are recorded in self.deliveries; Stripe would retry later
                    with contextlib.suppress(Exception):
                        await self._apost(http, ev)
                if done is not None and not done.done():
                    done.set_result(None)

    def wait_for_deliveries(self, timeout: float = 5.0) -> None:
        """Block until events caused by REST calls have been POSTed (background queue empty)."""
        loop = self._loop
        if loop is None:
            return

        async def _drain() -> None:
            done = loop.create_future()
            self._queue.put_nowait(([], done))
            await done

        asyncio.run_coroutine_threadsafe(_drain(), loop).result(timeout)

    # ------------------------------------------------------------ object makers
    def _product(self, name: str) -> dict[str, Any]:
        for prod in self.products.values():
            if prod["name"] == name:
                return prod
        now = self.now()
        prod = {
            "id": self._new_id("prod_", 14),
            "object": "product",
            "active": True,
            "created": now,
            "default_price": None,
            "description": None,
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": {},
            "name": name,
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": None,
            "updated": now,
            "url": None,
        }
        self.products[prod["id"]] = prod
        return prod

    def _new_price(
        self,
        *,
        unit_amount: int,
        currency: str,
        product_id: str,
        interval: str | None,
        interval_count: int = 1,
        active: bool = True,
        lookup_key: str | None = None,
        nickname: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        price = {
            "id": self._new_id("price_"),
            "object": "price",
            "active": active,
            "billing_scheme": "per_unit",
            "created": self.now(),
            "currency": currency.lower(),
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": metadata or {},
            "nickname": nickname,
            "product": product_id,
            "recurring": (
                {
                    "interval": interval,
                    "interval_count": interval_count,
                    "meter": None,
                    "trial_period_days": None,
                    "usage_type": "licensed",
                }
                if interval
                else None
            ),
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if interval else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }
        self.prices[price["id"]] = price
        return price

    def create_price(
        self,
        *,
        unit_amount: int,
        currency: str = "usd",
        recurring_interval: str | None = None,
        product_name: str = "Credits",
        lookup_key: str | None = None,
    ) -> str:
        """Create a product (reused by name) and a price; returns the price id."""
        if recurring_interval not in (None, "day", "week", "month", "year"):
            raise FakeStripeError(f"bad interval {recurring_interval!r}")
        with self._lock:
            prod = self._product(product_name)
            return self._new_price(
                unit_amount=unit_amount,
                currency=currency,
                product_id=prod["id"],
                interval=recurring_interval,
                lookup_key=lookup_key,
            )["id"]

    def _new_customer(
        self,
        *,
        email: str | None = None,
        name: str | None = None,
        metadata: dict[str, str] | None = None,
        description: str | None = None,
        phone: str | None = None,
    ) -> dict[str, Any]:
        cus = {
            "id": self._new_id("cus_", 14),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self.now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": description,
            "discount": None,
            "email": email,
            "invoice_prefix": secrets.token_hex(4).upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": metadata or {},
            "name": name,
            "next_invoice_sequence": 1,
            "phone": phone,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self.customers[cus["id"]] = cus
        return cus

    def create_customer(
        self, *, email: str | None = None, name: str | None = None, **metadata: str
    ) -> str:
        """Create a customer directly (no event); returns its id."""
        with self._lock:
            return self._new_customer(email=email, name=name, metadata=metadata)["id"]

    def _new_payment_method(
        self, *, customer: str | None, email: str | None, bank: bool = False
    ) -> dict[str, Any]:
        now = self.now()
        pm: dict[str, Any] = {
            "id": self._new_id("pm_"),
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": {
                    "city": None,
                    "country": "US",
                    "line1": None,
                    "line2": None,
                    "postal_code": "42424",
                    "state": None,
                },
                "email": email,
                "name": "Jenny Rosen",
                "phone": None,
                "tax_id": None,
            },
            "created": now,
            "customer": customer,
            "livemode": False,
            "metadata": {},
        }
        if bank:
            pm["type"] = "us_bank_account"
            pm["us_bank_account"] = {
                "account_holder_type": "individual",
                "account_type": "checking",
                "bank_name": "STRIPE TEST BANK",
                "financial_connections_account": None,
                "fingerprint": secrets.token_hex(8),
                "last4": "6789",
                "networks": {"preferred": "ach", "supported": ["ach"]},
                "routing_number": "110000000",
                "status_details": {},
            }
        else:
            pm["type"] = "card"
            pm["card"] = {
                "brand": self.card_brand,
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": "pass",
                    "cvc_check": "pass",
                },
                "country": "US",
                "display_brand": self.card_brand,
                "exp_month": 12,
                "exp_year": datetime.now(UTC).year + 3,
                "fingerprint": secrets.token_hex(8),
                "funding": "credit",
                "generated_from": None,
                "last4": self.card_last4,
                "networks": {"available": [self.card_brand], "preferred": None},
                "regulated_status": "unregulated",
                "three_d_secure_usage": {"supported": True},
                "wallet": None,
            }
        self.payment_methods[pm["id"]] = pm
        return pm

    def _new_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str | None,
        pm: dict[str, Any],
        status: str,
        metadata: dict[str, str] | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        pi_id = self._new_id("pi_")
        pi = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": amount if status == "succeeded" else 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "client_secret": f"{pi_id}_secret_{self._new_id('', 25)}",
            "confirmation_method": "automatic",
            "created": self.now(),
            "currency": currency,
            "customer": customer,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata or {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": pm["id"],
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": [pm["type"]],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": status,
            "transfer_data": None,
            "transfer_group": None,
        }
        self.payment_intents[pi_id] = pi
        return pi

    def _decline(self, pi: dict[str, Any]) -> None:
        pm = self.payment_methods[pi["payment_method"]]
        pi["status"] = "requires_payment_method"
        pi["amount_received"] = 0
        pi["last_payment_error"] = {
            "advice_code": None,
            "charge": pi["latest_charge"],
            "code": "card_declined",
            "decline_code": "generic_decline",
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "message": "Your card was declined.",
            "payment_method": copy.deepcopy(pm),
            "type": "card_error",
        }
        pi["payment_method"] = None

    def _new_charge(self, pi: dict[str, Any], *, succeeded: bool) -> dict[str, Any]:
        pm = self.payment_methods[pi["payment_method"]]
        ch_id = self._new_id("ch_")
        if pm["type"] == "card":
            card = pm["card"]
            details: dict[str, Any] = {
                "card": {
                    "amount_authorization": pi["amount"],
                    "authorization_code": "123456",
                    "brand": card["brand"],
                    "checks": card["checks"],
                    "country": card["country"],
                    "exp_month": card["exp_month"],
                    "exp_year": card["exp_year"],
                    "fingerprint": card["fingerprint"],
                    "funding": card["funding"],
                    "installments": None,
                    "last4": card["last4"],
                    "mandate": None,
                    "network": card["brand"],
                    "network_token": {"used": False},
                    "network_transaction_id": secrets.token_hex(8),
                    "regulated_status": "unregulated",
                    "three_d_secure": None,
                    "wallet": None,
                },
                "type": "card",
            }
        else:
            bank = pm["us_bank_account"]
            details = {
                "type": "us_bank_account",
                "us_bank_account": {
                    k: bank[k]
                    for k in (
                        "account_holder_type",
                        "account_type",
                        "bank_name",
                        "fingerprint",
                        "last4",
                        "routing_number",
                    )
                },
            }
        ch = {
            "id": ch_id,
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": pi["amount"] if succeeded else 0,
            "amount_refunded": 0,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": self._new_id("txn_") if succeeded else None,
            "billing_details": copy.deepcopy(pm["billing_details"]),
            "calculated_statement_descriptor": "WORKFORCE GATEWAY",
            "captured": succeeded,
            "created": self.now(),
            "currency": pi["currency"],
            "customer": pi["customer"],
            "description": pi["description"],
            "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": None if succeeded else "card_declined",
            "failure_message": None if succeeded else "Your card was declined.",
            "fraud_details": {},
            "livemode": False,
            "metadata": dict(pi["metadata"]),
            "on_behalf_of": None,
            "outcome": (
                {
                    "advice_code": None,
                    "network_advice_code": None,
                    "network_decline_code": None,
                    "network_status": "approved_by_network",
                    "reason": None,
                    "risk_level": "normal",
                    "risk_score": 20,
                    "seller_message": "Payment complete.",
                    "type": "authorized",
                }
                if succeeded
                else {
                    "advice_code": "try_again_later",
                    "network_advice_code": None,
                    "network_decline_code": None,
                    "network_status": "declined_by_network",
                    "reason": "generic_decline",
                    "risk_level": "normal",
                    "risk_score": 20,
                    "seller_message": "The bank did not return any further details with "
                    "this decline.",
                    "type": "issuer_declined",
                }
            ),
            "paid": succeeded,
            "payment_intent": pi["id"],
            "payment_method": pm["id"],
            "payment_method_details": details,
            "radar_options": {},
            "receipt_email": None,
            "receipt_number": None,
            "receipt_url": f"{self.url}/receipts/{ch_id}",
            "refunded": False,
            "review": None,
            "shipping": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "succeeded" if succeeded else "failed",
            "transfer_data": None,
            "transfer_group": None,
        }
        self.charges[ch_id] = ch
        pi["latest_charge"] = ch_id
        return ch

    def _plan(self, price: dict[str, Any]) -> dict[str, Any]:
        rec = price["recurring"] or {}
        return {
            "id": price["id"],
            "object": "plan",
            "active": price["active"],
            "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"],
            "billing_scheme": "per_unit",
            "created": price["created"],
            "currency": price["currency"],
            "interval": rec.get("interval"),
            "interval_count": rec.get("interval_count", 1),
            "livemode": False,
            "metadata": dict(price["metadata"]),
            "meter": None,
            "nickname": price["nickname"],
            "product": price["product"],
            "tiers_mode": None,
            "transform_usage": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }

    def _sub_interval(self, sub: dict[str, Any]) -> tuple[str, int]:
        rec = sub["items"]["data"][0]["price"]["recurring"]
        return rec["interval"], rec["interval_count"]

    def _set_period(self, sub: dict[str, Any], start: int, end: int) -> None:
        for item in sub["items"]["data"]:
            item["current_period_start"], item["current_period_end"] = start, end
        # legacy (pre-2025-03-31) location, kept for older integrations
        sub["current_period_start"], sub["current_period_end"] = start, end

    def _new_subscription(
        self,
        *,
        customer: str,
        lines: list[tuple[dict[str, Any], int]],
        pm: dict[str, Any] | None,
        status: str,
        metadata: dict[str, str],
    ) -> dict[str, Any]:
        now = self.now()
        sub_id = self._new_id("sub_")
        currency = lines[0][0]["currency"]
        items = [
            {
                "id": self._new_id("si_", 14),
                "object": "subscription_item",
                "billing_thresholds": None,
                "created": now,
                "current_period_end": 0,
                "current_period_start": 0,
                "discounts": [],
                "metadata": {},
                "plan": self._plan(price),
                "price": copy.deepcopy(price),
                "quantity": qty,
                "subscription": sub_id,
                "tax_rates": [],
            }
            for price, qty in lines
        ]
        sub: dict[str, Any] = {
            "id": sub_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": now,
            "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": None, "type": "flexible", "updated_at": now},
            "billing_thresholds": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": now,
            "currency": currency,
            "current_period_end": 0,
            "current_period_start": 0,
            "customer": customer,
            "days_until_due": None,
            "default_payment_method": pm["id"] if pm else None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={sub_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": metadata,
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": now,
            "status": status,
            "test_clock": None,
            "transfer_data": None,
            "trial_end": None,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": None,
        }
        interval, count = self._sub_interval(sub)
        self._set_period(sub, now, _add_interval(now, interval, count))
        self._sub_period_index[sub_id] = 1
        self.subscriptions[sub_id] = sub
        return sub

    def _line_description(self, price: dict[str, Any], qty: int) -> str:
        name = self.products[price["product"]]["name"]
        desc = f"{qty} × {name}"
        if price["recurring"]:
            desc += f" (at {_money(price['unit_amount'], price['currency'])} / "
            desc += f"{price['recurring']['interval']})"
        return desc

    def _new_invoice(
        self,
        *,
        customer: str,
        lines: list[tuple[dict[str, Any], int]],
        sub: dict[str, Any] | None,
        billing_reason: str,
        period_start: int,
        period_end: int,
        line_period: tuple[int, int],
        trial: bool = False,
    ) -> dict[str, Any]:
        now = self.now()
        cus = self.customers[customer]
        inv_id = self._new_id("in_")
        # a coupon on the subscription (``apply_coupon``): percent off every line
        coupon_discounts = [d for d in (sub or {}).get("discounts") or [] if d in self._discounts]
        data = []
        for price, qty in lines:
            amount = 0 if trial else price["unit_amount"] * qty
            off = [
                {"amount": amount * self._discounts[d]["percent_off"] // 100, "discount": d}
                for d in coupon_discounts
            ]
            item = None
            if sub is not None:
                item = next(
                    (i for i in sub["items"]["data"] if i["price"]["id"] == price["id"]), None
                )
            data.append(
                {
                    "id": self._new_id("il_"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": price["currency"],
                    "description": (
                        f"Trial period for {self.products[price['product']]['name']}"
                        if trial
                        else self._line_description(price, qty)
                    ),
                    "discount_amounts": off,
                    "discountable": True,
                    "discounts": list(coupon_discounts),
                    "invoice": inv_id,
                    "livemode": False,
                    "metadata": {},
                    "parent": (
                        {
                            "invoice_item_details": None,
                            "subscription_item_details": {
                                "invoice_item": None,
                                "proration": False,
                                "proration_details": {"credited_items": None},
                                "subscription": sub["id"],
                                "subscription_item": item["id"],
                            },
                            "type": "subscription_item_details",
                        }
                        if sub is not None and item is not None
                        else None
                    ),
                    "period": {"end": line_period[1], "start": line_period[0]},
                    "pretax_credit_amounts": [],
                    "pricing": {
                        "price_details": {"price": price["id"], "product": price["product"]},
                        "type": "price_details",
                        "unit_amount_decimal": price["unit_amount_decimal"],
                    },
                    "quantity": qty,
                    "subtotal": amount,
                    "taxes": [],
                    # legacy (pre-2025-03-31) field, kept for older integrations
                    "price": copy.deepcopy(price),
                }
            )
        subtotal = sum(line["amount"] for line in data)
        discounted = sum(d["amount"] for line in data for d in line["discount_amounts"])
        total = subtotal - discounted
        seq = cus["next_invoice_sequence"]
        cus["next_invoice_sequence"] = seq + 1
        inv = {
            "id": inv_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "WorkForce Gateway (test)",
            "account_tax_ids": None,
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_remaining": total,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": False,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None,
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": data[0]["currency"],
            "custom_fields": None,
            "customer": customer,
            "customer_address": None,
            "customer_email": cus["email"],
            "customer_name": cus["name"],
            "customer_phone": None,
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": list(coupon_discounts),
            "due_date": None,
            "effective_at": None,
            "ending_balance": None,
            "footer": None,
            "from_invoice": None,
            "hosted_invoice_url": f"{self.url}/invoice/{inv_id}",
            "invoice_pdf": f"{self.url}/invoice/{inv_id}/pdf",
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": {
                "object": "list",
                "data": data,
                "has_more": False,
                "total_count": len(data),
                "url": f"/v1/invoices/{inv_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None,
            "number": None,
            "on_behalf_of": None,
            "parent": (
                {
                    "quote_details": None,
                    "subscription_details": {
                        "metadata": dict(sub["metadata"]),
                        "subscription": sub["id"],
                    },
                    "type": "subscription_details",
                }
                if sub is not None
                else None
            ),
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": period_end,
            "period_start": period_start,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal,
            "test_clock": None,
            "total": total,
            "total_discount_amounts": (
                [{"amount": discounted, "discount": d} for d in coupon_discounts]
                if coupon_discounts
                else []
            ),
            "total_excluding_tax": total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": None,
            # legacy (pre-2025-03-31) field, kept for older integrations
            "subscription": sub["id"] if sub is not None else None,
        }
        self.invoices[inv_id] = inv
        if sub is not None:
            sub["latest_invoice"] = inv_id
        return inv

    def _finalize(self, inv: dict[str, Any]) -> None:
        now = self.now()
        cus = self.customers[inv["customer"]]
        inv["status"] = "open"
        inv["number"] = f"{cus['invoice_prefix']}-{cus['next_invoice_sequence'] - 1:04d}"
        inv["effective_at"] = now
        inv["status_transitions"]["finalized_at"] = now
        inv["webhooks_delivered_at"] = now

    def _invoice_payment(self, inv: dict[str, Any], pi: dict[str, Any]) -> dict[str, Any]:
        existing = [p for p in self.invoice_payments.values() if p["invoice"] == inv["id"]]
        for p in existing:
            p["is_default"] = False
        ip = {
            "id": self._new_id("inpay_"),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": inv["amount_due"],
            "created": self.now(),
            "currency": inv["currency"],
            "invoice": inv["id"],
            "is_default": True,
            "livemode": False,
            "payment": {"payment_intent": pi["id"], "type": "payment_intent"},
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        }
        self.invoice_payments[ip["id"]] = ip
        return ip

    def _pay_zero_invoice(self, inv: dict[str, Any]) -> list[dict[str, Any]]:
        """A $0 invoice (trial, 100% coupon) is paid at once, with no PaymentIntent."""
        now = self.now()
        inv["status"] = "paid"
        inv["amount_paid"], inv["amount_remaining"], inv["ending_balance"] = 0, 0, 0
        inv["next_payment_attempt"] = None
        inv["status_transitions"]["paid_at"] = now
        return [self._event("invoice.paid", inv), self._event("invoice.payment_succeeded", inv)]

    def _pay_invoice(self, inv: dict[str, Any], pi: dict[str, Any], ip: dict[str, Any]) -> None:
        now = self.now()
        inv["status"] = "paid"
        inv["attempted"] = True
        inv["attempt_count"] += 1
        inv["amount_paid"] = inv["amount_due"]
        inv["amount_remaining"] = 0
        inv["ending_balance"] = 0
        inv["next_payment_attempt"] = None
        inv["status_transitions"]["paid_at"] = now
        ip["status"] = "paid"
        ip["amount_paid"] = pi["amount"]
        ip["status_transitions"]["paid_at"] = now

    # ------------------------------------------------------ checkout lifecycle
    def complete_checkout(
        self, session_id: str, *, paid: bool = True, async_payment: bool = False
    ) -> list[dict[str, Any]]:
        """What the hosted page does when the buyer pays; returns (and delivers) the events.

        ``paid=False``: the card is declined, the session stays open, only
        ``payment_intent.payment_failed`` is emitted. ``async_payment=True``: a bank debit that
        settles later (``settle_async_payment``); the session completes with
        ``payment_status="unpaid"``.
        """
        with self._lock:
            events = self._complete_checkout(session_id, paid=paid, async_payment=async_payment)
        return self._auto(events)

    def _complete_checkout(
        self, session_id: str, *, paid: bool, async_payment: bool
    ) -> list[dict[str, Any]]:
        s = self._get("checkout_sessions", session_id)
        if s["status"] != "open":
            raise FakeStripeError(f"checkout session {session_id} is {s['status']}, not open")
        extra = self._session_extra[session_id]
        lines = [
            (self.prices[li["price"]["id"]], li["quantity"])
            for li in self._session_items[session_id]
        ]
        events: list[dict[str, Any]] = []
        cus_id = s["customer"]
        email = (
            s["customer_email"]
            or (self.customers[cus_id]["email"] if cus_id else None)
            or "jenny.rosen@example.com"
        )
        pm = self._new_payment_method(customer=None, email=email, bank=async_payment)
        amount, currency = s["amount_total"], s["currency"]

        earlier_pi = self.payment_intents.get(s["payment_intent"] or "")
        if not paid:
            pi = earlier_pi or self._new_payment_intent(
                amount=amount,
                currency=currency,
                customer=cus_id,
                pm=pm,
                status="requires_payment_method",
                metadata=dict(extra["payment_intent_metadata"]),
            )
            pi["payment_method"] = pm["id"]
            ch = self._new_charge(pi, succeeded=False)
            self._decline(pi)
            if s["mode"] == "payment":
                s["payment_intent"] = pi["id"]
            events.append(self._event("charge.failed", ch))
            events.append(self._event("payment_intent.payment_failed", pi))
            return events

        if cus_id is None and (s["mode"] == "subscription" or s["customer_creation"] == "always"):
            cus = self._new_customer(email=email)
            cus_id = s["customer"] = cus["id"]
            events.append(self._event("customer.created", cus))
        s["status"] = "complete"
        s["url"] = None
        s["customer_details"] = {
            "address": copy.deepcopy(pm["billing_details"]["address"]),
            "business_name": None,
            "email": email,
            "individual_name": None,
            "name": pm["billing_details"]["name"],
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
        trial_days = extra.get("trial_period_days", 0) if s["mode"] == "subscription" else 0
        s["payment_status"] = (
            "no_payment_required" if trial_days else "unpaid" if async_payment else "paid"
        )
        pi_status = "processing" if async_payment else "succeeded"

        if s["mode"] == "payment":
            if earlier_pi is not None:  # Stripe retries on the same PaymentIntent
                pi = earlier_pi
                pi.update(
                    customer=cus_id,
                    payment_method=pm["id"],
                    payment_method_types=[pm["type"]],
                    status=pi_status,
                    last_payment_error=None,
                    amount_received=amount if pi_status == "succeeded" else 0,
                )
            else:
                pi = self._new_payment_intent(
                    amount=amount,
                    currency=currency,
                    customer=cus_id,
                    pm=pm,
                    status=pi_status,
                    metadata=dict(extra["payment_intent_metadata"]),
                )
            s["payment_intent"] = pi["id"]
            tail: list[dict[str, Any]] = []
            if async_payment:
                tail.append(self._event("payment_intent.processing", pi))
            else:
                ch = self._new_charge(pi, succeeded=True)
                tail.append(self._event("charge.succeeded", ch))
                tail.append(self._event("payment_intent.succeeded", pi))
            events.append(self._event("checkout.session.completed", s))
            return events + tail

        # mode == "subscription"
        pm["customer"] = cus_id
        cus = self.customers[cus_id]
        prev_cus_pm = cus["invoice_settings"]["default_payment_method"]
        if prev_cus_pm is None:
            cus["invoice_settings"]["default_payment_method"] = pm["id"]
        recurring = [(p, q) for p, q in lines if p["recurring"]]
        sub = self._new_subscription(
            customer=cus_id,
            lines=recurring,
            pm=pm,
            status="trialing" if trial_days else "incomplete" if async_payment else "active",
            metadata=dict(extra["subscription_metadata"]),
        )
        if trial_days:  # the first period is the trial; billing starts when it ends
            trial_end = sub["start_date"] + trial_days * 86400
            sub["trial_start"], sub["trial_end"] = sub["start_date"], trial_end
            sub["billing_cycle_anchor"] = trial_end
            self._set_period(sub, sub["start_date"], trial_end)
            self._sub_period_index[sub["id"]] = 0
        start, end = sub["current_period_start"], sub["current_period_end"]
        inv = self._new_invoice(
            customer=cus_id,
            lines=lines,
            sub=sub,
            billing_reason="subscription_create",
            period_start=start,
            period_end=start,
            line_period=(start, end),
            trial=bool(trial_days),
        )
        inv_created = self._event("invoice.created", inv)
        self._finalize(inv)
        inv_finalized = self._event("invoice.finalized", inv)
        if trial_days:
            s["subscription"], s["invoice"] = sub["id"], inv["id"]
            events.append(self._event("checkout.session.completed", s))
            events.append(self._event("customer.subscription.created", sub))
            if prev_cus_pm is None:
                events.append(
                    self._event(
                        "customer.updated",
                        cus,
                        previous={"invoice_settings": {"default_payment_method": None}},
                    )
                )
            return [*events, inv_created, inv_finalized, *self._pay_zero_invoice(inv)]
        pi = self._new_payment_intent(
            amount=inv["amount_due"],
            currency=inv["currency"],
            customer=cus_id,
            pm=pm,
            status=pi_status,
            description="Subscription creation",
        )
        ip = self._invoice_payment(inv, pi)
        tail = []
        if async_payment:
            tail.append(self._event("payment_intent.processing", pi))
        else:
            ch = self._new_charge(pi, succeeded=True)
            self._pay_invoice(inv, pi, ip)
            tail += [
                self._event("charge.succeeded", ch),
                self._event("payment_intent.succeeded", pi),
                self._event("invoice.paid", inv),
                self._event("invoice.payment_succeeded", inv),
            ]
        s["subscription"], s["invoice"] = sub["id"], inv["id"]
        events.append(self._event("checkout.session.completed", s))
        events.append(self._event("customer.subscription.created", sub))
        if prev_cus_pm is None:
            events.append(
                self._event(
                    "customer.updated",
                    cus,
                    previous={"invoice_settings": {"default_payment_method": None}},
                )
            )
        return [*events, inv_created, inv_finalized, *tail]

    def settle_async_payment(self, session_id: str, *, succeeded: bool) -> list[dict[str, Any]]:
        """The delayed (bank debit) payment of a completed session clears or fails."""
        with self._lock:
            s = self._get("checkout_sessions", session_id)
            if s["status"] != "complete" or s["payment_status"] != "unpaid":
                raise FakeStripeError(f"checkout session {session_id} has no pending payment")
            inv = self.invoices.get(s["invoice"]) if s["invoice"] else None
            pi_id = s["payment_intent"] or (
                next(
                    p["payment"]["payment_intent"]
                    for p in self.invoice_payments.values()
                    if p["invoice"] == inv["id"] and p["is_default"]
                )
                if inv
                else None
            )
            pi = self.payment_intents[pi_id]
            sub = self.subscriptions.get(s["subscription"]) if s["subscription"] else None
            events: list[dict[str, Any]] = []
            if succeeded:
                pi["status"], pi["amount_received"] = "succeeded", pi["amount"]
                ch = self._new_charge(pi, succeeded=True)
                s["payment_status"] = "paid"
                events.append(self._event("checkout.session.async_payment_succeeded", s))
                events.append(self._event("charge.succeeded", ch))
                events.append(self._event("payment_intent.succeeded", pi))
                if inv is not None and sub is not None:
                    ip = next(
                        p
                        for p in self.invoice_payments.values()
                        if p["invoice"] == inv["id"] and p["is_default"]
                    )
                    self._pay_invoice(inv, pi, ip)
                    events.append(self._event("invoice.paid", inv))
                    events.append(self._event("invoice.payment_succeeded", inv))
                    prev = {"status": sub["status"]}
                    sub["status"] = "active"
                    events.append(self._event("customer.subscription.updated", sub, previous=prev))
            else:
                ch = self._new_charge(pi, succeeded=False)
                self._decline(pi)
                events.append(self._event("checkout.session.async_payment_failed", s))
                events.append(self._event("charge.failed", ch))
                events.append(self._event("payment_intent.payment_failed", pi))
                if inv is not None and sub is not None:
                    inv["attempted"], inv["attempt_count"] = True, inv["attempt_count"] + 1
                    events.append(self._event("invoice.payment_failed", inv))
                    prev = {"status": sub["status"]}
                    sub["status"] = "incomplete_expired"
                    sub["ended_at"] = self.now()
                    events.append(self._event("customer.subscription.updated", sub, previous=prev))
        return self._auto(events)

    def expire_checkout(self, session_id: str) -> list[dict[str, Any]]:
        """The session times out (or is expired via the API): ``checkout.session.expired``."""
        with self._lock:
            events = self._expire_checkout(session_id)
        return self._auto(events)

    def _expire_checkout(self, session_id: str) -> list[dict[str, Any]]:
        s = self._get("checkout_sessions", session_id)
        if s["status"] != "open":
            raise FakeStripeError(f"checkout session {session_id} is {s['status']}, not open")
        s["status"], s["url"] = "expired", None
        return [self._event("checkout.session.expired", s)]

    # -------------------------------------------------- subscription lifecycle
    def _charge_invoice(
        self, inv: dict[str, Any], sub: dict[str, Any] | None, *, succeeded: bool
    ) -> list[dict[str, Any]]:
        if inv["amount_due"] == 0:
            return self._pay_zero_invoice(inv)
        pm_id = (sub or {}).get("default_payment_method") or self.customers[inv["customer"]][
            "invoice_settings"
        ]["default_payment_method"]
        pm = self.payment_methods.get(pm_id) if pm_id else None
        if pm is None:
            pm = self._new_payment_method(customer=inv["customer"], email=inv["customer_email"])
        pi = self._new_payment_intent(
            amount=inv["amount_due"],
            currency=inv["currency"],
            customer=inv["customer"],
            pm=pm,
            status="succeeded" if succeeded else "requires_payment_method",
            description="Subscription update" if succeeded else None,
        )
        ip = self._invoice_payment(inv, pi)
        ch = self._new_charge(pi, succeeded=succeeded)
        if succeeded:
            self._pay_invoice(inv, pi, ip)
            return [
                self._event("charge.succeeded", ch),
                self._event("payment_intent.succeeded", pi),
                self._event("invoice.paid", inv),
                self._event("invoice.payment_succeeded", inv),
            ]
        self._decline(pi)
        inv["attempted"], inv["attempt_count"] = True, inv["attempt_count"] + 1
        inv["next_payment_attempt"] = self.now() + 3 * 86400
        return [
            self._event("charge.failed", ch),
            self._event("payment_intent.payment_failed", pi),
            self._event("invoice.payment_failed", inv),
        ]

    def _new_period(self, sub: dict[str, Any], *, succeeded: bool) -> list[dict[str, Any]]:
        old_items = copy.deepcopy(sub["items"])
        prev: dict[str, Any] = {"items": old_items, "latest_invoice": sub["latest_invoice"]}
        prev["current_period_start"] = sub["current_period_start"]
        prev["current_period_end"] = sub["current_period_end"]
        old_start, old_end = sub["current_period_start"], sub["current_period_end"]
        interval, count = self._sub_interval(sub)
        k = self._sub_period_index[sub["id"]] + 1
        self._sub_period_index[sub["id"]] = k
        new_end = _add_interval(sub["billing_cycle_anchor"], interval, count * k)
        self._set_period(sub, old_end, new_end)
        lines = [(self.prices[i["price"]["id"]], i["quantity"]) for i in sub["items"]["data"]]
        inv = self._new_invoice(
            customer=sub["customer"],
            lines=lines,
            sub=sub,
            billing_reason="subscription_cycle",
            period_start=old_start,
            period_end=old_end,
            line_period=(old_end, new_end),
        )
        events = [self._event("invoice.created", inv)]
        self._finalize(inv)
        events.append(self._event("invoice.finalized", inv))
        events += self._charge_invoice(inv, sub, succeeded=succeeded)
        new_status = "active" if succeeded else "past_due"
        if sub["status"] != new_status:
            prev["status"] = sub["status"]
            sub["status"] = new_status
        updated = self._event("customer.subscription.updated", sub, previous=prev)
        # Stripe moves the period first (subscription.updated), then bills it; a failed
        # payment then flips the status. One update event carries both here.
        return [updated, *events] if succeeded else [*events, updated]

    def _live_sub(self, sub_id: str) -> dict[str, Any]:
        sub = self._get("subscriptions", sub_id)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise FakeStripeError(f"subscription {sub_id} is {sub['status']}")
        return sub

    def renew_subscription(self, sub_id: str) -> list[dict[str, Any]]:
        """The current period ends. Normally: new period, invoice paid (``invoice.paid``).

        With ``cancel_at_period_end`` set, the subscription ends instead
        (``customer.subscription.deleted``), as Stripe does.
        """
        with self._lock:
            sub = self._live_sub(sub_id)
            if sub["cancel_at_period_end"]:
                events = self._cancel_now(sub, reason="cancellation_requested")
            else:
                events = self._new_period(sub, succeeded=True)
        return self._auto(events)

    def fail_invoice_payment(self, sub_id: str) -> list[dict[str, Any]]:
        """The next period's invoice cannot be paid: ``invoice.payment_failed``, past_due."""
        with self._lock:
            events = self._new_period(self._live_sub(sub_id), succeeded=False)
        return self._auto(events)

    def pay_invoice(self, invoice_id: str) -> list[dict[str, Any]]:
        """An open invoice gets paid (retry / new card); a past_due subscription turns active."""
        with self._lock:
            inv = self._get("invoices", invoice_id)
            if inv["status"] != "open":
                raise FakeStripeError(f"invoice {invoice_id} is {inv['status']}, not open")
            sub_id = (inv["parent"] or {}).get("subscription_details", {}).get("subscription")
            sub = self.subscriptions.get(sub_id) if sub_id else None
            events = self._charge_invoice(inv, sub, succeeded=True)
            if sub is not None and sub["status"] in ("past_due", "unpaid", "incomplete"):
                prev = {"status": sub["status"]}
                sub["status"] = "active"
                events.append(self._event("customer.subscription.updated", sub, previous=prev))
        return self._auto(events)

    def _apply_sub_changes(self, sub: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        prev: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "price":
                price = self.prices.get(value)
                if price is None:
                    raise FakeStripeError(f"no price {value!r}")
                prev.setdefault("items", copy.deepcopy(sub["items"]))
                item = sub["items"]["data"][0]
                item["price"], item["plan"] = copy.deepcopy(price), self._plan(price)
            elif key == "quantity":
                prev.setdefault("items", copy.deepcopy(sub["items"]))
                sub["items"]["data"][0]["quantity"] = int(value)
            elif key == "metadata":
                new = _merge_metadata(sub["metadata"], value)
                if new != sub["metadata"]:
                    prev["metadata"] = sub["metadata"]
                    sub["metadata"] = new
            elif key in ("current_period_start", "current_period_end"):
                prev.setdefault("items", copy.deepcopy(sub["items"]))
                prev[key] = sub[key]
                start = value if key == "current_period_start" else sub["current_period_start"]
                end = value if key == "current_period_end" else sub["current_period_end"]
                self._set_period(sub, int(start), int(end))
            elif key == "cancel_at_period_end":
                value = bool(value)
                if sub["cancel_at_period_end"] != value:
                    prev["cancel_at_period_end"] = sub["cancel_at_period_end"]
                    prev["cancel_at"] = sub["cancel_at"]
                    prev["canceled_at"] = sub["canceled_at"]
                    sub["cancel_at_period_end"] = value
                    sub["cancel_at"] = sub["current_period_end"] if value else None
                    sub["canceled_at"] = self.now() if value else None
            elif sub.get(key) != value:
                prev[key] = sub.get(key)
                sub[key] = value
        return prev

    def update_subscription(self, sub_id: str, **changes: Any) -> list[dict[str, Any]]:
        """Change a subscription (as the Dashboard/portal would): ``customer.subscription.updated``.

        Keys: any top-level field (``status=...``, ``cancel_at_period_end=True``), plus
        ``price=<price id>``, ``quantity=``, ``metadata={...}`` (merged),
        ``current_period_end=`` (moves the item period). ``status="canceled"`` emits
        ``customer.subscription.deleted`` instead.
        """
        with self._lock:
            sub = self._get("subscriptions", sub_id)
            if changes.get("status") == "canceled":
                rest = {k: v for k, v in changes.items() if k != "status"}
                self._apply_sub_changes(sub, rest)
                events = self._cancel_now(sub, reason="cancellation_requested")
            else:
                prev = self._apply_sub_changes(sub, changes)
                events = [self._event("customer.subscription.updated", sub, previous=prev)]
        return self._auto(events)

    def cancel_subscription(self, sub_id: str, *, at_period_end: bool = False) -> list[dict]:
        """Cancel now (``customer.subscription.deleted``) or at period end (``...updated``)."""
        if at_period_end:
            return self.update_subscription(sub_id, cancel_at_period_end=True)
        with self._lock:
            events = self._cancel_now(self._live_sub(sub_id), reason="cancellation_requested")
        return self._auto(events)

    def _cancel_now(
        self, sub: dict[str, Any], *, reason: str, request: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        now = self.now()
        sub["status"] = "canceled"
        sub["canceled_at"] = sub["canceled_at"] or now
        sub["ended_at"] = now
        sub["cancellation_details"]["reason"] = reason
        return [self._event("customer.subscription.deleted", sub, request=request)]

    def create_coupon(self, *, percent_off: int) -> str:
        """A coupon (as made in the Dashboard); returns its id."""
        with self._lock:
            coupon = {
                "id": self._new_id("co_", 8),
                "object": "coupon",
                "amount_off": None,
                "created": self.now(),
                "currency": None,
                "duration": "forever",
                "livemode": False,
                "metadata": {},
                "name": f"{percent_off}% off",
                "percent_off": percent_off,
                "valid": True,
            }
            self.coupons[coupon["id"]] = coupon
            return coupon["id"]

    def apply_coupon(self, sub_id: str, coupon_id: str) -> list[dict[str, Any]]:
        """Put a coupon on a subscription: its next invoices are discounted."""
        with self._lock:
            sub = self._live_sub(sub_id)
            coupon = self._get("coupons", coupon_id)
            di_id = self._new_id("di_", 14)
            self._discounts[di_id] = {"coupon": coupon_id, "percent_off": coupon["percent_off"]}
            prev = {"discounts": list(sub["discounts"])}
            sub["discounts"] = [*sub["discounts"], di_id]
            events = [self._event("customer.subscription.updated", sub, previous=prev)]
        return self._auto(events)

    # ------------------------------------------------------ charge lifecycle
    def refund_charge(self, charge_id: str, amount: int | None = None) -> list[dict[str, Any]]:
        """Refund (part of) a charge: ``charge.refunded``."""
        with self._lock:
            _refund, events = self._refund(self._get("charges", charge_id), amount)
        return self._auto(events)

    def _refund(
        self,
        ch: dict[str, Any],
        amount: int | None,
        request: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        remaining = ch["amount"] - ch["amount_refunded"]
        if ch["status"] != "succeeded":
            raise _ApiError(400, f"Charge {ch['id']} has not succeeded.", param="charge")
        if remaining <= 0:
            raise _ApiError(
                400,
                f"Charge {ch['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = remaining if amount is None else amount
        if amount <= 0 or amount > remaining:
            raise _ApiError(
                400,
                f"Refund amount ({_money(amount, ch['currency'])}) is greater than unrefunded "
                f"amount on charge ({_money(remaining, ch['currency'])})",
                param="amount",
            )
        re_ = {
            "id": self._new_id("re_"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": self._new_id("txn_"),
            "charge": ch["id"],
            "created": self.now(),
            "currency": ch["currency"],
            "destination_details": {"card": {"reference_status": "pending", "type": "refund"}},
            "metadata": metadata or {},
            "payment_intent": ch["payment_intent"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self.refunds[re_["id"]] = re_
        prev = {"amount_refunded": ch["amount_refunded"], "refunded": ch["refunded"]}
        ch["amount_refunded"] += amount
        ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
        if not ch["refunded"]:
            del prev["refunded"]
        return re_, [self._event("charge.refunded", ch, previous=prev, request=request)]

    def _dispute_txn(self, dp: dict[str, Any], sign: int, what: str) -> dict[str, Any]:
        return {
            "id": self._new_id("txn_"),
            "object": "balance_transaction",
            "amount": sign * dp["amount"],
            "created": self.now(),
            "currency": dp["currency"],
            "description": f"Chargeback {what} for {dp['charge']}",
            "fee": 1500 if sign < 0 else -1500,
            "net": sign * dp["amount"] - (1500 if sign < 0 else -1500),
            "reporting_category": "dispute" if sign < 0 else "dispute_reversal",
            "source": dp["id"],
            "status": "available",
            "type": "adjustment",
        }

    def dispute_charge(
        self, charge_id: str, *, reason: str = "fraudulent", inquiry: bool = False
    ) -> list[dict]:
        """The cardholder disputes the charge: ``charge.dispute.created``.

        A chargeback (default) withdraws the disputed amount at once (``needs_response``,
        one balance transaction, then ``charge.dispute.funds_withdrawn``). ``inquiry=True``:
        a retrieval request, no money moves (``warning_needs_response``)."""
        with self._lock:
            ch = self._get("charges", charge_id)
            now = self.now()
            dp = {
                "id": self._new_id("dp_"),
                "object": "dispute",
                "amount": ch["amount"] - ch["amount_refunded"],
                "balance_transactions": [],
                "charge": ch["id"],
                "created": now,
                "currency": ch["currency"],
                "enhanced_eligibility_types": [],
                "evidence": {},
                "evidence_details": {
                    "due_by": now + 7 * 86400,
                    "enhanced_eligibility": {},
                    "has_evidence": False,
                    "past_due": False,
                    "submission_count": 0,
                },
                "is_charge_refundable": inquiry,
                "livemode": False,
                "metadata": {},
                "payment_intent": ch["payment_intent"],
                "payment_method_details": {
                    "card": {"brand": self.card_brand, "network_reason_code": "10.4"},
                    "type": "card",
                },
                "reason": reason,
                "status": "warning_needs_response" if inquiry else "needs_response",
            }
            self.disputes[dp["id"]] = dp
            ch["disputed"] = True
            events = [self._event("charge.dispute.created", dp)]
            if not inquiry:
                dp["balance_transactions"].append(self._dispute_txn(dp, -1, "withdrawal"))
                events.append(self._event("charge.dispute.funds_withdrawn", dp))
        return self._auto(events)

    def escalate_dispute(self, dispute_id: str) -> list[dict[str, Any]]:
        """An inquiry becomes a chargeback: the money is withdrawn now."""
        with self._lock:
            dp = self._get("disputes", dispute_id)
            if not dp["status"].startswith("warning_") or dp["status"] == "warning_closed":
                raise FakeStripeError(f"dispute {dispute_id} is {dp['status']}, not an inquiry")
            dp["status"], dp["is_charge_refundable"] = "needs_response", False
            dp["balance_transactions"].append(self._dispute_txn(dp, -1, "withdrawal"))
            events = [self._event("charge.dispute.funds_withdrawn", dp)]
        return self._auto(events)

    def close_dispute(self, dispute_id: str, *, won: bool) -> list[dict[str, Any]]:
        """The dispute is decided: ``charge.dispute.closed`` with status won/lost (an
        inquiry closes as ``warning_closed``). A won chargeback gets its money back first
        (``charge.dispute.funds_reinstated``)."""
        with self._lock:
            dp = self._get("disputes", dispute_id)
            if dp["status"] in ("won", "lost", "warning_closed"):
                raise FakeStripeError(f"dispute {dispute_id} is already {dp['status']}")
            prev = {"status": dp["status"]}
            events = []
            if dp["status"].startswith("warning_"):
                dp["status"] = "warning_closed"
            elif won:
                dp["status"] = "won"
                dp["balance_transactions"].append(self._dispute_txn(dp, 1, "reversal"))
                events.append(self._event("charge.dispute.funds_reinstated", dp))
            else:
                dp["status"] = "lost"
            events.append(self._event("charge.dispute.closed", dp, previous=prev))
        return self._auto(events)

    # ================================================================ REST API
    def _build_app(self) -> Starlette:
        api = self._api
        routes = [
            Route("/v1/customers", api(self._h_create_customer), methods=["POST"]),
            Route("/v1/customers", api(self._h_list_customers), methods=["GET"]),
            Route("/v1/customers/search", api(self._h_search_customers), methods=["GET"]),
            Route("/v1/customers/{id}", api(self._h_get_customer), methods=["GET"]),
            Route("/v1/customers/{id}", api(self._h_update_customer), methods=["POST"]),
            Route("/v1/customers/{id}", api(self._h_delete_customer), methods=["DELETE"]),
            Route("/v1/checkout/sessions", api(self._h_create_session), methods=["POST"]),
            Route("/v1/checkout/sessions", api(self._h_list_sessions), methods=["GET"]),
            Route("/v1/checkout/sessions/{id}", api(self._h_get_session), methods=["GET"]),
            Route(
                "/v1/checkout/sessions/{id}/line_items",
                api(self._h_session_line_items),
                methods=["GET"],
            ),
            Route(
                "/v1/checkout/sessions/{id}/expire", api(self._h_expire_session), methods=["POST"]
            ),
            Route("/v1/billing_portal/sessions", api(self._h_create_portal), methods=["POST"]),
            Route("/v1/subscriptions", api(self._h_list_subscriptions), methods=["GET"]),
            Route("/v1/subscriptions/{id}", api(self._h_get_subscription), methods=["GET"]),
            Route("/v1/subscriptions/{id}", api(self._h_update_subscription), methods=["POST"]),
            Route("/v1/subscriptions/{id}", api(self._h_cancel_subscription), methods=["DELETE"]),
            Route("/v1/invoices", api(self._h_list_invoices), methods=["GET"]),
            Route("/v1/invoices/{id}", api(self._get_handler("invoices", "invoice"))),
            Route("/v1/invoice_payments", api(self._h_list_invoice_payments), methods=["GET"]),
            Route("/v1/charges", api(self._h_list_charges), methods=["GET"]),
            Route("/v1/charges/{id}", api(self._get_handler("charges", "charge"))),
            Route("/v1/refunds", api(self._h_create_refund), methods=["POST"]),
            Route("/v1/refunds/{id}", api(self._get_handler("refunds", "refund"))),
            Route("/v1/disputes", api(self._h_list_disputes), methods=["GET"]),
            Route("/v1/disputes/{id}", api(self._get_handler("disputes", "dispute"))),
            Route(
                "/v1/payment_intents/{id}",
                api(self._get_handler("payment_intents", "payment_intent")),
            ),
            Route(
                "/v1/payment_methods/{id}",
                api(self._get_handler("payment_methods", "PaymentMethod")),
            ),
            Route("/v1/prices", api(self._h_create_price), methods=["POST"]),
            Route("/v1/prices", api(self._h_list_prices), methods=["GET"]),
            Route("/v1/prices/{id}", api(self._get_handler("prices", "price"))),
            Route("/v1/products", api(self._h_create_product), methods=["POST"]),
            Route("/v1/products/{id}", api(self._get_handler("products", "product"))),
            Route("/v1/events", api(self._h_list_events), methods=["GET"]),
            Route("/v1/events/{id}", api(self._get_handler("events", "event"))),
            Route(
                "/v1/{rest:path}",
                api(self._h_unrecognized),
                methods=["GET", "POST", "DELETE", "PUT", "PATCH"],
            ),
            Route("/pay/{id}", self._page_pay, methods=["GET", "POST"]),
            Route("/portal/{id}", self._page_portal, methods=["GET"]),
            Route("/portal/{id}/cancel", self._page_portal_cancel, methods=["POST"]),
            Route("/invoice/{id}", self._page_invoice, methods=["GET"]),
        ]

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> Any:
            self._queue = asyncio.Queue()
            worker = asyncio.create_task(self._delivery_worker())
            try:
                yield
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

        return Starlette(routes=routes, lifespan=lifespan)

    def _api(self, handler: Callable[[_Ctx], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            raw = (await request.body()).decode("utf-8", "replace")
            request_id = self._new_id("req_", 14)
            with self._lock:
                status, body, headers, events = self._dispatch(handler, request, raw, request_id)
            if events:
                self._record(events)
                if self.auto_deliver and self.webhook_url:
                    self._queue.put_nowait((events, None))
            headers.setdefault("Request-Id", request_id)
            headers["Stripe-Version"] = request.headers.get("stripe-version") or API_VERSION
            return Response(body, status, headers=headers, media_type="application/json")

        return endpoint

    def _dispatch(
        self, handler: Callable[[_Ctx], Any], request: Request, raw: str, request_id: str
    ) -> tuple[int, bytes, dict[str, str], list[dict[str, Any]]]:
        method = request.method.upper()
        idem_key = request.headers.get("idempotency-key")
        headers: dict[str, str] = {}
        try:
            self._authenticate(request)
            if method == "POST" and idem_key:
                headers["Idempotency-Key"] = idem_key
                cached = self._idempotency.get(idem_key)
                if cached is not None:
                    c_method, c_path, c_raw, c_status, c_body, c_headers = cached
                    if (c_method, c_path, c_raw) != (method, request.url.path, raw):
                        raise _ApiError(
                            400,
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other than "
                            f"'{idem_key}' if you meant to execute a different request.",
                            type="idempotency_error",
                        )
                    return c_status, c_body, {**c_headers, "Idempotent-Replayed": "true"}, []
            pairs = parse_qsl(request.url.query, keep_blank_values=True)
            if method == "POST":
                pairs += parse_qsl(raw, keep_blank_values=True)
            params = parse_stripe_form(pairs)
            self.requests.append((method, request.url.path, params))
            ctx = _Ctx(
                method=method,
                path=request.url.path,
                params=params,
                path_params=dict(request.path_params),
                request_id=request_id,
                idempotency_key=idem_key,
            )
            result = handler(ctx)
            expand = params.get("expand") or []
            if isinstance(expand, str):
                expand = [expand]
            if expand:
                result = copy.deepcopy(result)
                for path in expand:
                    result = self._expand(result, str(path).split("."), str(path))
            status, body = 200, json.dumps(result, indent=2).encode()
            events = ctx.events
        except _ApiError as exc:
            status, body, events = (
                exc.status,
                json.dumps(exc.body(request_id), indent=2).encode(),
                [],
            )
        except Exception as exc:  # a bug in the fake: answer like Stripe's 500, keep it
            log.exception("fake Stripe failed on %s %s", method, request.url.path)
            self.errors.append(exc)
            err = _ApiError(500, "An unknown error occurred", type="api_error")
            status, body, events = 500, json.dumps(err.body(request_id)).encode(), []
        if method == "POST" and idem_key and status not in (401, 429, 500):
            self._idempotency[idem_key] = (
                method,
                request.url.path,
                raw,
                status,
                body,
                {"Request-Id": request_id, "Idempotency-Key": idem_key},
            )
        return status, body, headers, events

    def _authenticate(self, request: Request) -> None:
        auth = request.headers.get("authorization", "")
        key = None
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        elif auth.lower().startswith("basic "):
            with contextlib.suppress(Exception):
                key = base64.b64decode(auth[6:].strip()).decode().split(":", 1)[0]
        if not key:
            raise _ApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                "or we can help at https://support.stripe.com/.",
            )
        if not hmac.compare_digest(key, self.secret_key):
            head = key[: key.index("_", key.index("_") + 1) + 1] if key.count("_") >= 2 else ""
            masked = head + "*" * max(len(key) - len(head) - 4, 0) + key[-4:]
            raise _ApiError(401, f"Invalid API Key provided: {masked}")

    # ----------------------------------------------------------- expansion
    def _expand(self, obj: Any, path: list[str], full: str) -> Any:
        if not path or obj is None:
            return obj
        head, rest = path[0], path[1:]
        if isinstance(obj, list):
            return [self._expand(x, path, full) for x in obj]
        if not isinstance(obj, dict):
            raise _ApiError(400, f"This property cannot be expanded ({head}).", param="expand")
        if obj.get("object") in ("list", "search_result") and head == "data":
            obj["data"] = [self._expand(x, rest, full) for x in obj["data"]]
            return obj
        kind = obj.get("object")
        cannot = _ApiError(400, f"This property cannot be expanded ({head}).", param="expand")
        # "includable" properties: computed lists, copied so nested expansion can't leak back
        if head == "line_items" and kind == "checkout.session":
            obj["line_items"] = copy.deepcopy(self._session_line_items(obj["id"]))
        elif head == "refunds" and kind == "charge":
            items = [r for r in reversed(self.refunds.values()) if r["charge"] == obj["id"]]
            page = self._page(items, {}, f"/v1/charges/{obj['id']}/refunds")
            obj["refunds"] = copy.deepcopy(page)
        elif head == "payments" and kind == "invoice":
            items = [p for p in self.invoice_payments.values() if p["invoice"] == obj["id"]]
            page = self._page(items, {}, f"/v1/invoices/{obj['id']}/payments")
            obj["payments"] = copy.deepcopy(page)
        elif head not in obj:
            raise cannot
        elif head in _EXPANDABLE:
            if isinstance(obj[head], str):
                target = getattr(self, _EXPANDABLE[head][0]).get(obj[head])
                if target is not None:
                    obj[head] = copy.deepcopy(target)
        elif not (rest and isinstance(obj[head], dict)):  # only traverse plain hashes
            raise cannot
        if rest:
            obj[head] = self._expand(obj[head], rest, full)
        return obj

    # ----------------------------------------------------------- list helper
    def _page(self, items: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict:
        """Items newest first; honours limit / starting_after / ending_before."""
        limit = _to_int(params.get("limit", 10), "limit")
        if not 1 <= limit <= 100:
            raise _ApiError(
                400,
                "Invalid limit: must be between 1 and 100",
                code="parameter_invalid_integer",
                param="limit",
            )
        ids = [i["id"] for i in items]
        after, before = params.get("starting_after"), params.get("ending_before")
        if after:
            if after not in ids:
                raise _missing(url.rsplit("/", 1)[-1].rstrip("s"), after, "starting_after", 400)
            window = items[ids.index(after) + 1 :]
            page, has_more = window[:limit], len(window) > limit
        elif before:
            if before not in ids:
                raise _missing(url.rsplit("/", 1)[-1].rstrip("s"), before, "ending_before", 400)
            window = items[: ids.index(before)]
            page, has_more = window[-limit:], len(window) > limit
        else:
            page, has_more = items[:limit], len(items) > limit
        return {"object": "list", "data": page, "has_more": has_more, "url": url}

    def _get_handler(self, collection: str, noun: str) -> Callable[[_Ctx], Any]:
        def handler(ctx: _Ctx) -> dict[str, Any]:
            if ctx.method != "GET":
                return self._h_unrecognized(ctx)
            obj = getattr(self, collection).get(ctx.path_params["id"])
            if obj is None:
                raise _missing(noun, ctx.path_params["id"])
            return obj

        return handler

    def _h_unrecognized(self, ctx: _Ctx) -> dict[str, Any]:
        raise _ApiError(
            404,
            f"Unrecognized request URL ({ctx.method}: {ctx.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def _require(self, ctx: _Ctx, name: str) -> Any:
        value = ctx.params.get(name)
        if value in (None, ""):
            raise _ApiError(
                400, f"Missing required param: {name}.", code="parameter_missing", param=name
            )
        return value

    def _customer_ref(self, cus_id: Any, param: str = "customer") -> dict[str, Any]:
        cus = self.customers.get(str(cus_id))
        if cus is None or cus["id"] in self._deleted_customers:
            raise _missing("customer", str(cus_id), param, 400)
        return cus

    # ------------------------------------------------------------- customers
    def _h_create_customer(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        cus = self._new_customer(
            email=p.get("email") or None,
            name=p.get("name") or None,
            metadata=_metadata(p.get("metadata")),
            description=p.get("description") or None,
            phone=p.get("phone") or None,
        )
        pm_id = p.get("payment_method") or (p.get("invoice_settings") or {}).get(
            "default_payment_method"
        )
        if pm_id:
            if pm_id not in self.payment_methods:
                raise _missing("PaymentMethod", pm_id, "payment_method", 400)
            self.payment_methods[pm_id]["customer"] = cus["id"]
            cus["invoice_settings"]["default_payment_method"] = pm_id
        ctx.events.append(self._event("customer.created", cus, request=ctx.request_ref))
        return cus

    def _h_list_customers(self, ctx: _Ctx) -> dict[str, Any]:
        items = [
            c
            for c in reversed(self.customers.values())
            if c["id"] not in self._deleted_customers
            and ("email" not in ctx.params or c["email"] == ctx.params["email"])
        ]
        return self._page(items, ctx.params, "/v1/customers")

    def _h_search_customers(self, ctx: _Ctx) -> dict[str, Any]:
        query = str(self._require(ctx, "query"))
        match = self._search_predicate(query)
        items = [
            c
            for c in reversed(self.customers.values())
            if c["id"] not in self._deleted_customers and match(c)
        ]
        limit = _to_int(ctx.params.get("limit", 10), "limit")
        return {
            "object": "search_result",
            "data": items[:limit],
            "has_more": len(items) > limit,
            "next_page": None,
            "url": "/v1/customers/search",
        }

    @staticmethod
    def _search_predicate(query: str) -> Callable[[dict[str, Any]], bool]:
        """Stripe search query language, the subset used for customers:
        ``email:'a@b.c'``, ``name~'jen'``, ``metadata['user_id']:'42'`` joined by AND / OR."""
        clause_re = re.compile(
            r"""\s*(-?)(\w+)(?:\[['"]([^'"]+)['"]\])?\s*(:|~)\s*(?:'([^']*)'|"([^"]*)")\s*"""
        )
        joiner = "OR" if re.search(r"\sOR\s", query) else "AND"
        clauses = []
        for part in re.split(rf"\s{joiner}\s", query):
            m = clause_re.fullmatch(part)
            if not m:
                raise _ApiError(
                    400,
                    f"Invalid search query: {query}. Please see the search query language "
                    "documentation at https://stripe.com/docs/search#search-query-language.",
                    param="query",
                )
            neg, fieldname, subkey, op, v1, v2 = m.groups()
            clauses.append((bool(neg), fieldname, subkey, op, v1 if v1 is not None else v2))

        def match(obj: dict[str, Any]) -> bool:
            results = []
            for neg, fieldname, subkey, op, value in clauses:
                actual = obj.get(fieldname)
                if subkey is not None:
                    actual = (actual or {}).get(subkey)
                actual = "" if actual is None else str(actual)
                ok = value.lower() in actual.lower() if op == "~" else actual == value
                results.append(ok != neg)
            return any(results) if joiner == "OR" else all(results)

        return match

    def _h_get_customer(self, ctx: _Ctx) -> dict[str, Any]:
        cus_id = ctx.path_params["id"]
        if cus_id in self._deleted_customers:
            return {"id": cus_id, "object": "customer", "deleted": True}
        cus = self.customers.get(cus_id)
        if cus is None:
            raise _missing("customer", cus_id)
        return cus

    def _h_update_customer(self, ctx: _Ctx) -> dict[str, Any]:
        cus_id = ctx.path_params["id"]
        cus = self.customers.get(cus_id)
        if cus is None or cus_id in self._deleted_customers:
            raise _missing("customer", cus_id)
        p, prev = ctx.params, {}
        for key in ("email", "name", "description", "phone"):
            if key in p and cus[key] != (p[key] or None):
                prev[key], cus[key] = cus[key], p[key] or None
        if "metadata" in p:
            new = _merge_metadata(cus["metadata"], p["metadata"])
            if new != cus["metadata"]:
                prev["metadata"], cus["metadata"] = cus["metadata"], new
        pm_id = (p.get("invoice_settings") or {}).get("default_payment_method")
        if pm_id is not None:
            if pm_id and pm_id not in self.payment_methods:
                raise _missing(
                    "PaymentMethod", pm_id, "invoice_settings[default_payment_method]", 400
                )
            old = cus["invoice_settings"]["default_payment_method"]
            if old != (pm_id or None):
                prev["invoice_settings"] = {"default_payment_method": old}
                cus["invoice_settings"]["default_payment_method"] = pm_id or None
        if prev:
            ctx.events.append(
                self._event("customer.updated", cus, previous=prev, request=ctx.request_ref)
            )
        return cus

    def _h_delete_customer(self, ctx: _Ctx) -> dict[str, Any]:
        cus_id = ctx.path_params["id"]
        cus = self.customers.get(cus_id)
        if cus is None or cus_id in self._deleted_customers:
            raise _missing("customer", cus_id)
        for sub in self.subscriptions.values():
            if sub["customer"] == cus_id and sub["status"] not in (
                "canceled",
                "incomplete_expired",
            ):
                ctx.events += self._cancel_now(sub, reason="cancellation_requested")
        self._deleted_customers.add(cus_id)
        ctx.events.append(self._event("customer.deleted", cus, request=ctx.request_ref))
        return {"id": cus_id, "object": "customer", "deleted": True}

    # -------------------------------------------------------------- checkout
    def _resolve_line_item(self, li: Any, i: int) -> tuple[dict[str, Any], int]:
        if not isinstance(li, dict):
            raise _ApiError(400, "Invalid array", param="line_items")
        qty = _to_int(li.get("quantity", 1), f"line_items[{i}][quantity]")
        if qty < 1:
            raise _ApiError(
                400,
                "This value must be greater than or equal to 1.",
                param=f"line_items[{i}][quantity]",
            )
        if li.get("price"):
            price = self.prices.get(li["price"])
            if price is None:
                raise _missing("price", li["price"], f"line_items[{i}][price]", 400)
            if not price["active"]:
                raise _ApiError(
                    400,
                    "The price specified is inactive. This field only accepts active prices.",
                    param=f"line_items[{i}][price]",
                )
            return price, qty
        pd = li.get("price_data")
        if not isinstance(pd, dict):
            raise _ApiError(
                400,
                "You must specify either `price` or `price_data` for each line item.",
                param=f"line_items[{i}]",
            )
        currency = pd.get("currency")
        if not currency:
            raise _ApiError(
                400,
                f"Missing required param: line_items[{i}][price_data][currency].",
                code="parameter_missing",
                param=f"line_items[{i}][price_data][currency]",
            )
        amount = _to_int(
            pd.get("unit_amount", pd.get("unit_amount_decimal")),
            f"line_items[{i}][price_data][unit_amount]",
        )
        if pd.get("product"):
            if pd["product"] not in self.products:
                raise _missing(
                    "product", pd["product"], f"line_items[{i}][price_data][product]", 400
                )
            prod = self.products[pd["product"]]
        else:
            name = (pd.get("product_data") or {}).get("name")
            if not name:
                raise _ApiError(
                    400,
                    f"Missing required param: line_items[{i}][price_data][product_data][name].",
                    code="parameter_missing",
                    param=f"line_items[{i}][price_data][product_data][name]",
                )
            prod = self._product(name)
        rec = pd.get("recurring") or {}
        price = self._new_price(
            unit_amount=amount,
            currency=currency,
            product_id=prod["id"],
            interval=rec.get("interval"),
            interval_count=_to_int(rec.get("interval_count", 1), "interval_count"),
            active=False,
        )
        return price, qty

    def _h_create_session(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        mode = self._require(ctx, "mode")
        if mode not in ("payment", "subscription", "setup"):
            raise _ApiError(
                400,
                "Invalid mode: must be one of payment, setup, or subscription",
                param="mode",
            )
        if mode == "setup":
            raise _ApiError(400, "The fake does not implement mode=setup.", param="mode")
        if p.get("customer") and p.get("customer_email"):
            raise _ApiError(
                400,
                "You may only specify one of these parameters: customer, customer_email.",
                param="customer_email",
            )
        cus = self._customer_ref(p["customer"]) if p.get("customer") else None
        raw_items = p.get("line_items")
        if not raw_items:
            raise _ApiError(
                400,
                "line_items is required when mode is " + mode + ".",
                code="parameter_missing",
                param="line_items",
            )
        if not isinstance(raw_items, list):
            raise _ApiError(400, "Invalid array", param="line_items")
        lines = [self._resolve_line_item(li, i) for i, li in enumerate(raw_items)]
        currencies = {price["currency"] for price, _ in lines}
        if len(currencies) > 1:
            raise _ApiError(400, "All line items must use the same currency.", param="line_items")
        recurring = [price for price, _ in lines if price["recurring"]]
        if mode == "payment" and recurring:
            raise _ApiError(
                400,
                "You specified `payment` mode but passed a recurring price. Either switch to "
                "`subscription` mode or use only one-time prices.",
                param="line_items",
            )
        if mode == "subscription" and not recurring:
            raise _ApiError(
                400,
                "You must provide at least one recurring price in `subscription` mode when "
                "using prices.",
                param="line_items",
            )
        metadata = _metadata(p.get("metadata"))
        now = self.now()
        cs_id = "cs_test_a1" + self._new_id("", 56)
        currency = currencies.pop()
        total = sum(price["unit_amount"] * qty for price, qty in lines)
        session = {
            "id": cs_id,
            "object": "checkout.session",
            "adaptive_pricing": {"enabled": False},
            "after_expiration": None,
            "allow_promotion_codes": (
                _to_bool(p["allow_promotion_codes"], "allow_promotion_codes")
                if "allow_promotion_codes" in p
                else None
            ),
            "amount_subtotal": total,
            "amount_total": total,
            "automatic_tax": {
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "billing_address_collection": p.get("billing_address_collection"),
            "cancel_url": p.get("cancel_url"),
            "client_reference_id": p.get("client_reference_id") or None,
            "client_secret": None,
            "collected_information": None,
            "consent": None,
            "consent_collection": None,
            "created": now,
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": cus["id"] if cus else None,
            "customer_creation": (
                None if cus or mode == "subscription" else p.get("customer_creation", "if_required")
            ),
            "customer_details": (
                {
                    "address": None,
                    "business_name": None,
                    "email": cus["email"],
                    "individual_name": None,
                    "name": cus["name"],
                    "phone": None,
                    "tax_exempt": "none",
                    "tax_ids": None,
                }
                if cus
                else None
            ),
            "customer_email": p.get("customer_email") or None,
            "discounts": [],
            "expires_at": _to_int(p.get("expires_at", now + 86400), "expires_at"),
            "invoice": None,
            "invoice_creation": (
                {"enabled": False, "invoice_data": None} if mode == "payment" else None
            ),
            "livemode": False,
            "locale": p.get("locale"),
            "metadata": metadata,
            "mode": mode,
            "origin_context": None,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always",
            "payment_method_configuration_details": None,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": p.get("payment_method_types") or ["card"],
            "payment_status": "unpaid",
            "permissions": None,
            "phone_number_collection": {"enabled": False},
            "presentment_details": None,
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": p.get("submit_type"),
            "subscription": None,
            "success_url": p.get("success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": p.get("ui_mode", "hosted"),
            "url": f"{self.url}/pay/{cs_id}",
            "wallet_options": None,
        }
        self.checkout_sessions[cs_id] = session
        self._session_items[cs_id] = [
            {
                "id": self._new_id("li_"),
                "object": "item",
                "adjustable_quantity": None,
                "amount_discount": 0,
                "amount_subtotal": price["unit_amount"] * qty,
                "amount_tax": 0,
                "amount_total": price["unit_amount"] * qty,
                "currency": price["currency"],
                "description": self.products[price["product"]]["name"],
                "discounts": [],
                "metadata": {},
                "price": copy.deepcopy(price),
                "quantity": qty,
                "taxes": [],
            }
            for price, qty in lines
        ]
        trial_days = (p.get("subscription_data") or {}).get("trial_period_days")
        self._session_extra[cs_id] = {
            "trial_period_days": (
                _to_int(trial_days, "subscription_data[trial_period_days]") if trial_days else 0
            ),
            "subscription_metadata": _metadata(
                (p.get("subscription_data") or {}).get("metadata"),
                "subscription_data[metadata]",
            ),
            "payment_intent_metadata": _metadata(
                (p.get("payment_intent_data") or {}).get("metadata"),
                "payment_intent_data[metadata]",
            ),
        }
        return session

    def _session(self, ctx: _Ctx) -> dict[str, Any]:
        s = self.checkout_sessions.get(ctx.path_params["id"])
        if s is None:
            raise _missing("checkout.session", ctx.path_params["id"])
        return s

    def _session_line_items(self, cs_id: str, params: dict[str, Any] | None = None) -> dict:
        return self._page(
            list(self._session_items[cs_id]),
            params or {},
            f"/v1/checkout/sessions/{cs_id}/line_items",
        )

    def _h_get_session(self, ctx: _Ctx) -> dict[str, Any]:
        return self._session(ctx)

    def _h_session_line_items(self, ctx: _Ctx) -> dict[str, Any]:
        return self._session_line_items(self._session(ctx)["id"], ctx.params)

    def _h_expire_session(self, ctx: _Ctx) -> dict[str, Any]:
        s = self._session(ctx)
        if s["status"] != "open":
            raise _ApiError(
                400,
                f'Only Checkout Sessions with a status in ["open"] can be expired. This '
                f'Checkout Session has a status of "{s["status"]}".',
            )
        ctx.events += self._expire_checkout(s["id"])
        return s

    def _h_list_sessions(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        items = [
            s
            for s in reversed(self.checkout_sessions.values())
            if all(
                s.get(k) == p[k]
                for k in ("customer", "payment_intent", "subscription", "status")
                if k in p
            )
        ]
        return self._page(items, p, "/v1/checkout/sessions")

    def _h_create_portal(self, ctx: _Ctx) -> dict[str, Any]:
        cus = self._customer_ref(self._require(ctx, "customer"))
        bps_id = self._new_id("bps_")
        portal = {
            "id": bps_id,
            "object": "billing_portal.session",
            "configuration": ctx.params.get("configuration") or "bpc_fakedefaultconfig00000",
            "created": self.now(),
            "customer": cus["id"],
            "customer_account": None,
            "flow": None,
            "livemode": False,
            "locale": ctx.params.get("locale"),
            "on_behalf_of": None,
            "return_url": ctx.params.get("return_url"),
            "url": f"{self.url}/portal/{bps_id}",
        }
        self.billing_portal_sessions[bps_id] = portal
        return portal

    # --------------------------------------------------------- subscriptions
    def _sub(self, ctx: _Ctx) -> dict[str, Any]:
        sub = self.subscriptions.get(ctx.path_params["id"])
        if sub is None:
            raise _missing("subscription", ctx.path_params["id"])
        return sub

    def _h_get_subscription(self, ctx: _Ctx) -> dict[str, Any]:
        return self._sub(ctx)

    def _h_list_subscriptions(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        status = p.get("status")
        items = []
        for sub in reversed(self.subscriptions.values()):
            if "customer" in p and sub["customer"] != p["customer"]:
                continue
            if "price" in p and all(i["price"]["id"] != p["price"] for i in sub["items"]["data"]):
                continue
            if status is None and sub["status"] == "canceled":
                continue
            if status not in (None, "all") and sub["status"] != status:
                continue
            items.append(sub)
        return self._page(items, p, "/v1/subscriptions")

    def _h_update_subscription(self, ctx: _Ctx) -> dict[str, Any]:
        sub, p = self._sub(ctx), ctx.params
        if sub["status"] in ("canceled", "incomplete_expired") and (
            set(p) - {"metadata", "cancellation_details", "expand"}
        ):
            raise _ApiError(
                400,
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
        changes: dict[str, Any] = {}
        if "metadata" in p:
            changes["metadata"] = p["metadata"]
        if "cancel_at_period_end" in p:
            changes["cancel_at_period_end"] = _to_bool(
                p["cancel_at_period_end"], "cancel_at_period_end"
            )
        if "description" in p:
            changes["description"] = p["description"] or None
        if "default_payment_method" in p:
            pm_id = p["default_payment_method"] or None
            if pm_id and pm_id not in self.payment_methods:
                raise _missing("PaymentMethod", pm_id, "default_payment_method", 400)
            changes["default_payment_method"] = pm_id
        items = p.get("items")
        if items:
            if not isinstance(items, list) or not isinstance(items[0], dict):
                raise _ApiError(400, "Invalid array", param="items")
            item = items[0]
            if item.get("id") and item["id"] != sub["items"]["data"][0]["id"]:
                raise _ApiError(
                    400,
                    f"Subscription item {item['id']} does not belong to subscription {sub['id']}.",
                    param="items[0][id]",
                )
            if item.get("price"):
                price = self.prices.get(item["price"])
                if price is None:
                    raise _missing("price", item["price"], "items[0][price]", 400)
                if not price["recurring"]:
                    raise _ApiError(
                        400,
                        "The price specified is set to `type=one_time` but this field only "
                        "accepts prices with `type=recurring`.",
                        param="items[0][price]",
                    )
                changes["price"] = price["id"]
            if item.get("quantity"):
                changes["quantity"] = _to_int(item["quantity"], "items[0][quantity]")
        cd = p.get("cancellation_details")
        prev = self._apply_sub_changes(sub, changes)
        if isinstance(cd, dict):
            old = copy.deepcopy(sub["cancellation_details"])
            for k in ("comment", "feedback"):
                if k in cd:
                    sub["cancellation_details"][k] = cd[k] or None
            if old != sub["cancellation_details"]:
                prev["cancellation_details"] = old
        if prev:
            ctx.events.append(
                self._event(
                    "customer.subscription.updated", sub, previous=prev, request=ctx.request_ref
                )
            )
        return sub

    def _h_cancel_subscription(self, ctx: _Ctx) -> dict[str, Any]:
        sub = self._sub(ctx)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise _missing("subscription", sub["id"])
        cd = ctx.params.get("cancellation_details")
        if isinstance(cd, dict):
            for k in ("comment", "feedback"):
                if k in cd:
                    sub["cancellation_details"][k] = cd[k] or None
        ctx.events += self._cancel_now(
            sub, reason="cancellation_requested", request=ctx.request_ref
        )
        return sub

    # ------------------------------------------------- invoices, charges ...
    def _h_list_invoices(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        items = [
            inv
            for inv in reversed(self.invoices.values())
            if ("customer" not in p or inv["customer"] == p["customer"])
            and ("subscription" not in p or inv["subscription"] == p["subscription"])
            and ("status" not in p or inv["status"] == p["status"])
        ]
        return self._page(items, p, "/v1/invoices")

    def _h_list_invoice_payments(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        payment = p.get("payment") or {}
        items = [
            ip
            for ip in reversed(self.invoice_payments.values())
            if ("invoice" not in p or ip["invoice"] == p["invoice"])
            and (
                "payment_intent" not in payment
                or ip["payment"]["payment_intent"] == payment["payment_intent"]
            )
            and ("status" not in p or ip["status"] == p["status"])
        ]
        return self._page(items, p, "/v1/invoice_payments")

    def _h_list_charges(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        items = [
            ch
            for ch in reversed(self.charges.values())
            if ("customer" not in p or ch["customer"] == p["customer"])
            and ("payment_intent" not in p or ch["payment_intent"] == p["payment_intent"])
        ]
        return self._page(items, p, "/v1/charges")

    def _h_list_disputes(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        items = [
            dp
            for dp in reversed(self.disputes.values())
            if ("charge" not in p or dp["charge"] == p["charge"])
            and ("payment_intent" not in p or dp["payment_intent"] == p["payment_intent"])
        ]
        return self._page(items, p, "/v1/disputes")

    def _h_create_refund(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        if p.get("charge"):
            ch = self.charges.get(p["charge"])
            if ch is None:
                raise _missing("charge", p["charge"], "charge", 400)
        elif p.get("payment_intent"):
            pi = self.payment_intents.get(p["payment_intent"])
            if pi is None:
                raise _missing("payment_intent", p["payment_intent"], "payment_intent", 400)
            if not pi["latest_charge"]:
                raise _ApiError(
                    400,
                    f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
                    param="payment_intent",
                )
            ch = self.charges[pi["latest_charge"]]
        else:
            raise _ApiError(
                400,
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
            )
        amount = _to_int(p["amount"], "amount") if "amount" in p else None
        refund, events = self._refund(
            ch,
            amount,
            request=ctx.request_ref,
            metadata=_metadata(p.get("metadata")),
            reason=p.get("reason"),
        )
        ctx.events += events
        return refund

    def _h_create_price(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        currency = self._require(ctx, "currency")
        amount = _to_int(self._require(ctx, "unit_amount"), "unit_amount")
        if p.get("product"):
            if p["product"] not in self.products:
                raise _missing("product", p["product"], "product", 400)
            prod = self.products[p["product"]]
        elif (p.get("product_data") or {}).get("name"):
            prod = self._product(p["product_data"]["name"])
        else:
            raise _ApiError(
                400,
                "You must specify either `product` or `product_data` when creating a price.",
                param="product",
            )
        rec = p.get("recurring") or {}
        price = self._new_price(
            unit_amount=amount,
            currency=currency,
            product_id=prod["id"],
            interval=rec.get("interval"),
            interval_count=_to_int(rec.get("interval_count", 1), "recurring[interval_count]"),
            lookup_key=p.get("lookup_key"),
            nickname=p.get("nickname"),
            metadata=_metadata(p.get("metadata")),
        )
        return price

    def _h_list_prices(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        keys = p.get("lookup_keys")
        if isinstance(keys, str):
            keys = [keys]
        items = [
            pr
            for pr in reversed(self.prices.values())
            if ("active" not in p or pr["active"] == _to_bool(p["active"], "active"))
            and ("product" not in p or pr["product"] == p["product"])
            and ("type" not in p or pr["type"] == p["type"])
            and (keys is None or pr["lookup_key"] in keys)
        ]
        return self._page(items, p, "/v1/prices")

    def _h_create_product(self, ctx: _Ctx) -> dict[str, Any]:
        name = self._require(ctx, "name")
        prod = self._product(name)
        prod["metadata"] = _metadata(ctx.params.get("metadata"))
        return prod

    def _h_list_events(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        types = p.get("types")
        if isinstance(types, str):
            types = [types]
        wanted = [p["type"]] if p.get("type") else types

        def ok(ev: dict[str, Any]) -> bool:
            if not wanted:
                return True
            return any(
                ev["type"].startswith(t[:-1]) if t.endswith("*") else ev["type"] == t
                for t in wanted
            )

        items = [ev for ev in reversed(self.events.values()) if ok(ev)]
        return self._page(items, p, "/v1/events")

    # ========================================================= hosted pages
    def _page_html(self, title: str, body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title></head><body>{body}</body></html>",
            status_code=status,
        )

    def _pay_form(self, s: dict[str, Any], error: str | None = None) -> HTMLResponse:
        items = self._session_items[s["id"]]
        rows = "".join(
            f"<li>{html.escape(li['description'])} × {li['quantity']}: "
            f"{_money(li['amount_total'], li['currency'])}"
            + (f" / {li['price']['recurring']['interval']}" if li["price"]["recurring"] else "")
            + "</li>"
            for li in items
        )
        cancel = (
            f'<a id="cancel" href="{html.escape(s["cancel_url"])}">Cancel</a>'
            if s["cancel_url"]
            else ""
        )
        err = f'<p id="error" role="alert">{html.escape(error)}</p>' if error else ""
        body = (
            f"<h1>Pay WorkForce Gateway (test mode)</h1>"
            f'<p id="amount">{_money(s["amount_total"], s["currency"])}</p>'
            f'<ul id="items">{rows}</ul>{err}'
            f'<form method="post" action="/pay/{s["id"]}">'
            '<button id="pay" type="submit" name="outcome" value="paid">Pay</button> '
            '<button id="decline" type="submit" name="outcome" value="declined">'
            "Pay with a declined card</button> "
            '<button id="pay-async" type="submit" name="outcome" value="async">'
            "Pay by bank debit (settles later)</button></form>"
            f"<p>{cancel}</p>"
        )
        return self._page_html("Checkout", body)

    async def _page_pay(self, request: Request) -> Response:
        cs_id = request.path_params["id"]
        with self._lock:
            s = self.checkout_sessions.get(cs_id)
        if s is None:
            return self._page_html("Not found", "<h1>Something went wrong</h1>", 404)
        if s["status"] != "open":
            return self._page_html(
                "Checkout",
                '<h1 id="inactive">This Checkout Session is no longer active '
                f"({s['status']}).</h1>",
            )
        if request.method == "GET":
            return self._pay_form(s)
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        outcome = form.get("outcome", "paid")
        with self._lock:
            try:
                events = self._complete_checkout(
                    cs_id, paid=outcome != "declined", async_payment=outcome == "async"
                )
            except FakeStripeError as exc:
                return self._page_html("Checkout", f"<h1>{html.escape(str(exc))}</h1>", 409)
        self._record(events)
        if events and self.auto_deliver and self.webhook_url:
            done = asyncio.get_running_loop().create_future()
            self._queue.put_nowait((events, done))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done, self.delivery_timeout * (len(events) + 1))
        if outcome == "declined":
            return self._pay_form(s, "Your card was declined.")
        if s["success_url"]:
            return RedirectResponse(
                s["success_url"].replace("{CHECKOUT_SESSION_ID}", cs_id), status_code=303
            )
        return self._page_html("Checkout", '<h1 id="paid">Payment complete</h1>')

    async def _page_portal(self, request: Request) -> Response:
        with self._lock:
            portal = self.billing_portal_sessions.get(request.path_params["id"])
            if portal is None:
                return self._page_html("Not found", "<h1>Something went wrong</h1>", 404)
            subs = [
                s
                for s in self.subscriptions.values()
                if s["customer"] == portal["customer"] and s["status"] != "canceled"
            ]
            cus = self.customers[portal["customer"]]
            pm = self.payment_methods.get(cus["invoice_settings"]["default_payment_method"] or "")
        rows = []
        for sub in subs:
            item = sub["items"]["data"][0]
            ends = datetime.fromtimestamp(item["current_period_end"], UTC).date().isoformat()
            state = f"cancels {ends}" if sub["cancel_at_period_end"] else f"renews {ends}"
            button = (
                ""
                if sub["cancel_at_period_end"]
                else f'<form method="post" action="/portal/{portal["id"]}/cancel">'
                f'<input type="hidden" name="subscription" value="{sub["id"]}">'
                '<button class="cancel-subscription" type="submit">Cancel plan</button></form>'
            )
            rows.append(
                f'<li data-subscription="{sub["id"]}">'
                f"{html.escape(self.products[item['price']['product']]['name'])} "
                f"{_money(item['price']['unit_amount'], item['price']['currency'])} "
                f"({html.escape(sub['status'])}, {state}){button}</li>"
            )
        card = (
            f'<p id="card">{html.escape(pm["card"]["brand"])} •••• {pm["card"]["last4"]}</p>'
            if pm and pm["type"] == "card"
            else ""
        )
        ret = portal["return_url"] or "/"
        body = (
            f"<h1>Billing portal (test mode)</h1><p>{html.escape(cus['email'] or '')}</p>"
            f'{card}<ul id="subscriptions">{"".join(rows)}</ul>'
            f'<a id="return" href="{html.escape(ret)}">Return</a>'
        )
        return self._page_html("Billing portal", body)

    async def _page_portal_cancel(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        with self._lock:
            portal = self.billing_portal_sessions.get(request.path_params["id"])
            sub = self.subscriptions.get(form.get("subscription", ""))
            if portal is None or sub is None or sub["customer"] != portal["customer"]:
                return self._page_html("Not found", "<h1>Something went wrong</h1>", 404)
            prev = self._apply_sub_changes(sub, {"cancel_at_period_end": True})
            events = (
                [self._event("customer.subscription.updated", sub, previous=prev)] if prev else []
            )
        self._record(events)
        if events and self.auto_deliver and self.webhook_url:
            done = asyncio.get_running_loop().create_future()
            self._queue.put_nowait((events, done))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done, self.delivery_timeout * 2)
        return RedirectResponse(f"/portal/{portal['id']}", status_code=303)

    async def _page_invoice(self, request: Request) -> Response:
        with self._lock:
            inv = self.invoices.get(request.path_params["id"])
        if inv is None:
            return self._page_html("Not found", "<h1>Something went wrong</h1>", 404)
        body = (
            f"<h1>Invoice {html.escape(inv['number'] or inv['id'])}</h1>"
            f'<p id="amount">{_money(inv["amount_due"], inv["currency"])}</p>'
            f'<p id="status">{html.escape(inv["status"])}</p>'
        )
        return self._page_html("Invoice", body)
