"""`FakeStripe`: the state, the server on loopback, and what a test makes Stripe do."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import stripe
import uvicorn

from tests.fixtures.readiness import wait_until_ready

from . import checkout, customers, disputes, payments, prices, subscriptions
from .app import build_app
from .state import Store
from .webhooks import Deliveries
from .wire import FakeStripeError, Obj

__all__ = ["FakeStripe"]


class FakeStripe(Store, Deliveries):
    """In-memory Stripe on ``http://127.0.0.1:<free port>``; see the package docstring.

    Besides the objects (`Store`): ``requests`` logs API calls ``(method, path, params)``,
    ``errors`` keeps bugs of the fake itself (answered 500), ``deliveries`` logs webhook
    POSTs. Helpers raise ``FakeStripeError`` for unknown ids or impossible transitions.
    """

    secret_key: str = "sk_test_fake"

    def __init__(self, *, webhook_url: str | None = None, delivery_timeout: float = 10.0) -> None:
        Store.__init__(self)
        Deliveries.__init__(self, webhook_url, delivery_timeout)
        self.requests: list[tuple[str, str, Obj]] = []
        self.errors: list[BaseException] = []
        # Idempotency-Key -> (method, path, raw body, status, body)
        self.idempotency: dict[str, tuple[str, str, str, int, bytes]] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = build_app(self)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> FakeStripe:
        if self._thread is not None:
            return self
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on accepted sockets whose proto
        # says TCP; without it every keep-alive request waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
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
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name=f"fake-stripe:{self.url}",
            daemon=True,
        )
        self._thread.start()
        try:
            wait_until_ready(
                lambda: server.started, alive=self._thread.is_alive, what="fake Stripe"
            )
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.close_deliveries()
        self._server = self._thread = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, **kwargs: Any) -> stripe.StripeClient:
        """A ``stripe.StripeClient`` pointed at this fake (no network retries)."""
        kwargs.setdefault("max_network_retries", 0)
        return stripe.StripeClient(self.secret_key, base_addresses={"api": self.url}, **kwargs)

    def _auto(self, events: list[Obj]) -> list[Obj]:
        """Record the events and deliver them now (when ``auto_deliver``)."""
        self.deliver_now(self.record(events))
        return events

    # ------------------------------------------------- set up, as in the Dashboard
    def create_price(
        self,
        *,
        unit_amount: int,
        currency: str = "usd",
        recurring_interval: str | None = None,
        product_name: str = "Credits",
    ) -> str:
        """A price (of a product found or made by name); its id."""
        with self.lock:
            price = prices.create_price(
                self,
                unit_amount=unit_amount,
                currency=currency,
                recurring_interval=recurring_interval,
                product_name=product_name,
            )
        return str(price["id"])

    def create_customer(self, *, email: str | None = None, **metadata: str) -> str:
        """A customer made in the Dashboard (no event); its id."""
        with self.lock:
            return str(customers.new_customer(self, email=email, meta=metadata)["id"])

    def create_coupon(self, *, percent_off: int) -> str:
        with self.lock:
            return str(subscriptions.create_coupon(self, percent_off=percent_off)["id"])

    # -------------------------------- what buyers and Stripe do; each returns the events
    def complete_checkout(self, session_id: str, *, async_payment: bool = False) -> list[Obj]:
        """The buyer pays on the hosted page (``async_payment``: by a bank debit that
        settles later, see ``settle_async_payment``)."""
        with self.lock:
            events = checkout.complete(self, session_id, async_payment=async_payment)
        return self._auto(events)

    def settle_async_payment(self, session_id: str, *, succeeded: bool) -> list[Obj]:
        with self.lock:
            events = checkout.settle_async(self, session_id, succeeded=succeeded)
        return self._auto(events)

    def expire_checkout(self, session_id: str) -> list[Obj]:
        with self.lock:
            events = checkout.expire(self, session_id)
        return self._auto(events)

    def renew_subscription(self, sub_id: str) -> list[Obj]:
        """The period ends: a new one, its invoice paid."""
        with self.lock:
            events = subscriptions.new_period(
                self, subscriptions.live(self, sub_id), succeeded=True
            )
        return self._auto(events)

    def fail_invoice_payment(self, sub_id: str) -> list[Obj]:
        """The next period's invoice cannot be paid: ``invoice.payment_failed``, past_due."""
        with self.lock:
            sub = subscriptions.live(self, sub_id)
            events = subscriptions.new_period(self, sub, succeeded=False)
        return self._auto(events)

    def update_subscription(
        self, sub_id: str, *, price: str | None = None, **fields: Any
    ) -> list[Obj]:
        """A change in the Dashboard: the plan's ``price``, or top-level ``fields``."""
        with self.lock:
            sub = self.get("subscriptions", sub_id)
            events = subscriptions.update(self, sub, price=price, **fields)
        return self._auto(events)

    def cancel_subscription(self, sub_id: str) -> list[Obj]:
        with self.lock:
            events = subscriptions.cancel_now(self, subscriptions.live(self, sub_id))
        return self._auto(events)

    def apply_coupon(self, sub_id: str, coupon_id: str) -> list[Obj]:
        with self.lock:
            sub, coupon = subscriptions.live(self, sub_id), self.get("coupons", coupon_id)
            events = subscriptions.apply_coupon(self, sub, coupon)
        return self._auto(events)

    def refund_charge(self, charge_id: str, amount: int | None = None) -> list[Obj]:
        """Refund ``amount`` (default: the rest) of a charge, as from the Dashboard."""
        with self.lock:
            events = payments.refund(self, self.get("charges", charge_id), amount)
        return self._auto(events)

    def dispute_charge(
        self, charge_id: str, *, reason: str = "fraudulent", inquiry: bool = False
    ) -> list[Obj]:
        """The cardholder disputes the charge: a chargeback, or an ``inquiry``."""
        with self.lock:
            ch = self.get("charges", charge_id)
            events = disputes.open_dispute(self, ch, reason=reason, inquiry=inquiry)
        return self._auto(events)

    def escalate_dispute(self, dispute_id: str) -> list[Obj]:
        with self.lock:
            events = disputes.escalate(self, self.get("disputes", dispute_id))
        return self._auto(events)

    def set_off_session_outcome(self, customer_id: str, outcome: str) -> None:
        """What the customer's bank answers to the next off-session payments: ``succeed``,
        ``decline``, ``authentication_required`` (3-D Secure) or ``processing`` (later:
        `finish_processing`)."""
        if outcome not in ("succeed", "decline", "authentication_required", "processing"):
            raise FakeStripeError(f"no such off-session outcome {outcome!r}")
        with self.lock:
            self.customers[customer_id]
            self.off_session_outcomes[customer_id] = outcome

    def finish_processing(self, payment_intent_id: str, *, succeeded: bool) -> list[Obj]:
        """The bank answers a processing payment: ``payment_intent.succeeded`` or
        ``payment_intent.payment_failed``."""
        with self.lock:
            pi = self.get("payment_intents", payment_intent_id)
            events = payments.finish_processing(self, pi, succeeded=succeeded)
        return self._auto(events)

    def redeliver(self, event_id: str) -> Any:
        """Stripe delivers an event again (its retries, or "Resend" in the Dashboard)."""
        with self.lock:
            event = self.get("events", event_id)
        return self.deliver(event)

    def events_of(self, type_: str, **metadata: str) -> list[Obj]:
        """Recorded events of one type whose object carries this metadata, oldest first."""
        with self.lock:
            found = [e for e in self.events.values() if e["type"] == type_]
        return [
            e
            for e in found
            if all(e["data"]["object"].get("metadata", {}).get(k) == v for k, v in metadata.items())
        ]

    def close_dispute(self, dispute_id: str, *, won: bool) -> list[Obj]:
        with self.lock:
            events = disputes.close(self, self.get("disputes", dispute_id), won=won)
        return self._auto(events)
