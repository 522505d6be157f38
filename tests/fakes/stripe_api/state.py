"""The fake's state: Stripe's objects by id, and the events that changed them.

Every resource module reads and writes a `Store`; `FakeStripe` is one. Callers hold
`store.lock` around anything that changes objects (the REST app, the pages and the test
helpers run on different threads).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

from .wire import API_VERSION, FakeStripeError, Obj, new_id, now

__all__ = ["Ctx", "Store"]


@dataclass
class Ctx:
    """One API request, as a REST handler sees it."""

    method: str
    path: str
    params: Obj
    path_params: dict[str, str]
    request_id: str
    idempotency_key: str | None
    events: list[Obj] = field(default_factory=list)  # caused by the request

    @property
    def request_ref(self) -> Obj:
        return {"id": self.request_id, "idempotency_key": self.idempotency_key}


class Store:
    """Plain dicts keyed by id, safe to read from tests."""

    url: str  # where the fake listens (hosted pages live there)

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.url = ""
        self.card_brand, self.card_last4 = "visa", "4242"  # the card the buyer "enters"
        # customer id -> what its bank answers to an off-session payment (default: succeed)
        self.off_session_outcomes: dict[str, str] = {}
        self.customers: dict[str, Obj] = {}
        self.products: dict[str, Obj] = {}
        self.prices: dict[str, Obj] = {}
        self.checkout_sessions: dict[str, Obj] = {}
        self.billing_portal_sessions: dict[str, Obj] = {}
        self.subscriptions: dict[str, Obj] = {}
        self.coupons: dict[str, Obj] = {}
        self.invoices: dict[str, Obj] = {}
        self.invoice_payments: dict[str, Obj] = {}
        self.payment_methods: dict[str, Obj] = {}
        self.payment_intents: dict[str, Obj] = {}
        self.charges: dict[str, Obj] = {}
        self.disputes: dict[str, Obj] = {}
        self.events: dict[str, Obj] = {}
        # what Stripe keeps but does not show as we need it
        self.session_items: dict[str, list[Obj]] = {}  # cs_… -> its line items
        self.session_extra: dict[str, Obj] = {}  # cs_… -> subscription/payment_intent data
        self.discounts: dict[str, Obj] = {}  # di_… -> {"coupon", "percent_off"}
        self.period_index: dict[str, int] = {}  # sub_… -> periods since the cycle anchor

    def get(self, collection: str, obj_id: str) -> Obj:
        obj: Obj | None = getattr(self, collection).get(obj_id)
        if obj is None:
            raise FakeStripeError(f"no {collection[:-1]} {obj_id!r}")
        return obj

    def event(
        self,
        type: str,
        obj: Obj,
        *,
        previous: Obj | None = None,
        request: Obj | None = None,
    ) -> Obj:
        """An event with a snapshot of ``obj`` (recorded when the caller returns it)."""
        data: Obj = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(previous)
        return {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": request or {"id": None, "idempotency_key": None},
            "type": type,
        }

    def record(self, events: list[Obj]) -> list[Obj]:
        with self.lock:
            for ev in events:
                self.events[ev["id"]] = ev
        return events
