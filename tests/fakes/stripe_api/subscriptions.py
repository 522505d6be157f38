"""Subscriptions: made by a completed Checkout, renewed, failed, changed, discounted and
canceled by the test; REST: list (customer, ``status=all``), cancel (``DELETE``).

The billing period lives on the subscription *items* (the SDK's API version) and, for
older integrations, on the subscription too.
"""

from __future__ import annotations

import copy

from .invoices import charge_invoice, finalize, new_invoice
from .state import Ctx, Store
from .wire import FakeStripeError, Obj, add_interval, missing, new_id, now, page

__all__ = [
    "ENDED",
    "ROUTES",
    "apply_coupon",
    "cancel_now",
    "create_coupon",
    "live",
    "new_period",
    "new_subscription",
    "set_period",
    "update",
]

ENDED = ("canceled", "incomplete_expired")


def set_period(sub: Obj, start: int, end: int) -> None:
    for item in sub["items"]["data"]:
        item["current_period_start"], item["current_period_end"] = start, end
    sub["current_period_start"], sub["current_period_end"] = start, end  # legacy place


def new_subscription(
    st: Store, *, customer: str, lines: list[tuple[Obj, int]], pm: Obj, status: str, meta: Obj
) -> Obj:
    created = now()
    sub_id = new_id("sub_")
    items: list[Obj] = [
        {
            "id": new_id("si_", 14),
            "object": "subscription_item",
            "created": created,
            "current_period_end": 0,
            "current_period_start": 0,
            "discounts": [],
            "metadata": {},
            "price": copy.deepcopy(price),
            "quantity": qty,
            "subscription": sub_id,
        }
        for price, qty in lines
    ]
    sub: Obj = {
        "id": sub_id,
        "object": "subscription",
        "billing_cycle_anchor": created,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": created,
        "currency": lines[0][0]["currency"],
        "customer": customer,
        "default_payment_method": pm["id"],
        "discounts": [],
        "ended_at": None,
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": meta,
        "start_date": created,
        "status": status,
        "trial_end": None,
        "trial_start": None,
    }
    rec = items[0]["price"]["recurring"]
    set_period(sub, created, add_interval(created, rec["interval"], rec["interval_count"]))
    st.period_index[sub_id] = 1
    st.subscriptions[sub_id] = sub
    return sub


def live(st: Store, sub_id: str) -> Obj:
    sub = st.get("subscriptions", sub_id)
    if sub["status"] in ENDED:
        raise FakeStripeError(f"subscription {sub_id} is {sub['status']}")
    return sub


def new_period(st: Store, sub: Obj, *, succeeded: bool) -> list[Obj]:
    """The period ends: the next one starts and its invoice is charged."""
    prev: Obj = {
        "items": copy.deepcopy(sub["items"]),
        "latest_invoice": sub["latest_invoice"],
        "current_period_start": sub["current_period_start"],
        "current_period_end": sub["current_period_end"],
    }
    old_start, old_end = sub["current_period_start"], sub["current_period_end"]
    rec = sub["items"]["data"][0]["price"]["recurring"]
    st.period_index[sub["id"]] += 1
    count = rec["interval_count"] * st.period_index[sub["id"]]
    new_end = add_interval(sub["billing_cycle_anchor"], rec["interval"], count)
    set_period(sub, old_end, new_end)
    inv = new_invoice(
        st,
        sub=sub,
        lines=[(st.prices[i["price"]["id"]], i["quantity"]) for i in sub["items"]["data"]],
        billing_reason="subscription_cycle",
        period=(old_start, old_end),
        line_period=(old_end, new_end),
    )
    events = [st.event("invoice.created", inv)]
    finalize(st, inv)
    events.append(st.event("invoice.finalized", inv))
    events += charge_invoice(st, inv, sub, succeeded=succeeded)
    status = "active" if succeeded else "past_due"
    if sub["status"] != status:
        prev["status"], sub["status"] = sub["status"], status
    updated = st.event("customer.subscription.updated", sub, previous=prev)
    # Stripe moves the period first (subscription.updated), then bills it; a failed
    # payment then flips the status. One update event carries both here.
    return [updated, *events] if succeeded else [*events, updated]


def update(st: Store, sub: Obj, *, price: str | None = None, **fields: object) -> list[Obj]:
    """A change made in the Dashboard: the item's ``price``, or top-level ``fields``."""
    prev: Obj = {}
    if price is not None:
        new_price = st.get("prices", price)
        prev["items"] = copy.deepcopy(sub["items"])
        sub["items"]["data"][0]["price"] = copy.deepcopy(new_price)
    for key, value in fields.items():
        if sub.get(key) != value:
            prev[key], sub[key] = sub.get(key), value
    return [st.event("customer.subscription.updated", sub, previous=prev)]


def cancel_now(st: Store, sub: Obj, *, request: Obj | None = None) -> list[Obj]:
    sub["status"] = "canceled"
    sub["canceled_at"] = sub["canceled_at"] or now()
    sub["ended_at"] = now()
    sub["cancellation_details"]["reason"] = "cancellation_requested"
    return [st.event("customer.subscription.deleted", sub, request=request)]


def create_coupon(st: Store, *, percent_off: int) -> Obj:
    coupon: Obj = {
        "id": new_id("co_", 8),
        "object": "coupon",
        "created": now(),
        "duration": "forever",
        "livemode": False,
        "metadata": {},
        "name": f"{percent_off}% off",
        "percent_off": percent_off,
        "valid": True,
    }
    st.coupons[coupon["id"]] = coupon
    return coupon


def apply_coupon(st: Store, sub: Obj, coupon: Obj) -> list[Obj]:
    """A discount on the subscription: its next invoices are ``percent_off`` cheaper."""
    di_id = new_id("di_", 14)
    st.discounts[di_id] = {"coupon": coupon["id"], "percent_off": coupon["percent_off"]}
    prev = {"discounts": list(sub["discounts"])}
    sub["discounts"] = [*sub["discounts"], di_id]
    return [st.event("customer.subscription.updated", sub, previous=prev)]


def _status_wanted(sub: Obj, status: str | None) -> bool:
    if status is None:  # Stripe's default: all but canceled ones
        return bool(sub["status"] != "canceled")
    return status in ("all", sub["status"])


def _list(st: Store, ctx: Ctx) -> Obj:
    p = ctx.params
    items: list[Obj] = [
        sub
        for sub in reversed(st.subscriptions.values())
        if ("customer" not in p or sub["customer"] == p["customer"])
        and _status_wanted(sub, p.get("status"))
    ]
    return page(items, p, "/v1/subscriptions")


def _cancel(st: Store, ctx: Ctx) -> Obj:
    sub = st.subscriptions.get(ctx.path_params["id"])
    if sub is None or sub["status"] in ENDED:
        raise missing("subscription", ctx.path_params["id"])
    ctx.events += cancel_now(st, sub, request=ctx.request_ref)
    return sub


ROUTES = [
    ("GET", "/v1/subscriptions", _list),
    ("DELETE", "/v1/subscriptions/{id}", _cancel),
]
