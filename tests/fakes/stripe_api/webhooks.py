"""Webhook events, signed as Stripe signs them and POSTed to ``webhook_url``.

Helper methods deliver synchronously from the test's thread (``deliver``), so a test can
assert right after the call; events caused by REST calls are delivered in the background
on the fake's own loop, after the API response, as Stripe does (``wait_for_deliveries``
drains them). ``adeliver`` is for a receiver on the caller's own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterable

import httpx

from .wire import FakeStripeError, Obj

__all__ = ["Deliveries", "sign_payload"]


def sign_payload(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload``: ``t=<ts>,v1=<hex HMAC-SHA256>``."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


Queued = tuple[list[Obj], "asyncio.Future[None] | None"]


class Deliveries:
    """Delivery of events to ``webhook_url``; ``deliveries`` logs every POST attempted:
    ``{"event_id", "type", "status_code", "error"}``."""

    webhook_secret: str = "whsec_fake_2f0c4a8e5b7d4c1e9a3b6d8f0e2c4a6b"

    def __init__(self, webhook_url: str | None, delivery_timeout: float) -> None:
        self.webhook_url = webhook_url
        self.auto_deliver = True
        self.delivery_timeout = delivery_timeout
        self.deliveries: list[Obj] = []
        self._deliveries_lock = threading.Lock()
        self._http: httpx.Client | None = None  # one per fake: making one loads the CA bundle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Queued] | None = None

    def _request(
        self, event: Obj, secret: str | None, timestamp: int | None
    ) -> tuple[str, bytes, dict[str, str]]:
        target = self.webhook_url
        if not target:
            raise FakeStripeError("webhook_url is not set")
        payload = json.dumps(event, indent=2)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign_payload(payload, secret or self.webhook_secret, timestamp),
        }
        return target, payload.encode(), headers

    def _note(self, event: Obj, status: int | None, error: str | None = None) -> None:
        entry = {"event_id": event["id"], "type": event["type"], "status_code": status}
        with self._deliveries_lock:
            self.deliveries.append({**entry, "error": error})

    def deliver(
        self, event: Obj, *, signature_secret: str | None = None, timestamp: int | None = None
    ) -> httpx.Response:
        """POST one event, signed (with another secret or time if given), from this thread."""
        target, body, headers = self._request(event, signature_secret, timestamp)
        with self._deliveries_lock:
            if self._http is None:
                self._http = httpx.Client(timeout=self.delivery_timeout)
            http = self._http
        try:
            resp = http.post(target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._note(event, None, repr(exc))
            raise
        self._note(event, resp.status_code)
        return resp

    async def adeliver(
        self, event: Obj, *, signature_secret: str | None = None, timestamp: int | None = None
    ) -> httpx.Response:
        """``deliver`` for a receiver that runs on the caller's own event loop."""
        async with httpx.AsyncClient(timeout=self.delivery_timeout) as http:
            return await self._apost(http, event, signature_secret, timestamp)

    async def _apost(
        self,
        http: httpx.AsyncClient,
        event: Obj,
        signature_secret: str | None = None,
        timestamp: int | None = None,
    ) -> httpx.Response:
        target, body, headers = self._request(event, signature_secret, timestamp)
        try:
            resp = await http.post(target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._note(event, None, repr(exc))
            raise
        self._note(event, resp.status_code)
        return resp

    def deliver_now(self, events: Iterable[Obj]) -> None:
        """Deliver from this thread when ``auto_deliver`` is on (the helpers' events)."""
        if self.auto_deliver and self.webhook_url:
            for ev in events:
                self.deliver(ev)

    def deliver_later(self, events: list[Obj], done: asyncio.Future[None] | None = None) -> None:
        """Queue for the background worker (call on the fake's loop)."""
        if events and self.auto_deliver and self.webhook_url and self._queue is not None:
            self._queue.put_nowait((events, done))
        elif done is not None:
            done.set_result(None)

    async def delivery_worker(self) -> None:
        self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
        async with httpx.AsyncClient(timeout=self.delivery_timeout) as http:
            while True:
                events, done = await self._queue.get()
                for ev in events:
                    if not (self.auto_deliver and self.webhook_url):
                        break
                    # failures are logged in self.deliveries; Stripe would retry later
                    with contextlib.suppress(Exception):
                        await self._apost(http, ev)
                if done is not None and not done.done():
                    done.set_result(None)

    def wait_for_deliveries(self, timeout: float = 5.0) -> None:
        """Block until events caused by REST calls have been POSTed (queue drained)."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            return

        async def drain() -> None:
            done = loop.create_future()
            queue.put_nowait(([], done))
            await done

        asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout)

    def close_deliveries(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = self._loop = self._queue = None
