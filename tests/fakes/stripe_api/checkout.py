"""Checkout Sessions: create, retrieve (``line_items`` expandable), list (customer, status,
payment_intent); completed when the buyer pays on the hosted page (``complete``), settled
later for bank debits (``settle_async``), or expired.

Paying a ``mode=payment`` session makes a PaymentIntent and a charge; a
``mode=subscription`` session makes the subscription and its first invoice, paid (or $0
for a trial: ``subscription_data[trial_period_days]``).
"""

from __future__ import annotations

import copy

from .customers import customer_ref, new_customer
from .invoices import default_payment, finalize, invoice_payment, new_invoice, pay_invoice, pay_zero
from .payments import decline, new_charge, new_payment_intent, new_payment_method
from .prices import product_name
from .state import Ctx, Store
from .subscriptions import new_subscription, set_period
from .wire import (
    ApiError,
    FakeStripeError,
    Obj,
    metadata,
    missing,
    new_id,
    now,
    page,
    require,
    to_int,
)

__all__ = ["ROUTES", "complete", "expire", "line_items", "settle_async"]


def _line_items(st: Store, raw: object) -> list[tuple[Obj, int]]:
    if not raw:
        raise ApiError(400, "Missing required param: line_items.", param="line_items")
    if not isinstance(raw, list) or not all(isinstance(li, dict) for li in raw):
        raise ApiError(400, "Invalid array", param="line_items")
    lines = []
    for i, li in enumerate(raw):
        price = st.prices.get(li.get("price") or "")
        if price is None or not price["active"]:
            raise missing("price", str(li.get("price")), f"line_items[{i}][price]", 400)
        qty = to_int(li.get("quantity", 1), f"line_items[{i}][quantity]")
        if qty < 1:
            raise ApiError(400, "Invalid quantity", param=f"line_items[{i}][quantity]")
        lines.append((price, qty))
    if len({price["currency"] for price, _ in lines}) > 1:
        raise ApiError(400, "All line items must use the same currency.", param="line_items")
    return lines


def _create(st: Store, ctx: Ctx) -> Obj:
    p = ctx.params
    mode = require(p, "mode")
    if mode not in ("payment", "subscription"):
        raise ApiError(400, f"The fake does not implement mode={mode}.", param="mode")
    cus = customer_ref(st, p["customer"]) if p.get("customer") else None
    lines = _line_items(st, p.get("line_items"))
    recurring = any(price["recurring"] for price, _ in lines)
    if mode == "payment" and recurring:
        raise ApiError(
            400,
            "You specified `payment` mode but passed a recurring price. Either switch to "
            "`subscription` mode or use only one-time prices.",
            param="line_items",
        )
    if mode == "subscription" and not recurring:
        raise ApiError(
            400,
            "You must provide at least one recurring price in `subscription` mode.",
            param="line_items",
        )
    created = now()
    cs_id = "cs_test_a1" + new_id("", 56)
    total = sum(price["unit_amount"] * qty for price, qty in lines)
    session = {
        "id": cs_id,
        "object": "checkout.session",
        "amount_subtotal": total,
        "amount_total": total,
        "cancel_url": p.get("cancel_url"),
        "client_reference_id": p.get("client_reference_id") or None,
        "created": created,
        "currency": lines[0][0]["currency"],
        "customer": cus["id"] if cus else None,
        "customer_details": {"email": cus["email"], "name": cus["name"]} if cus else None,
        "customer_email": None,
        "expires_at": created + 86400,
        "invoice": None,
        "livemode": False,
        "metadata": metadata(p.get("metadata")),
        "mode": mode,
        "payment_intent": None,
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "status": "open",
        "subscription": None,
        "success_url": p.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": f"{st.url}/pay/{cs_id}",
    }
    st.checkout_sessions[cs_id] = session
    st.session_items[cs_id] = [
        {
            "id": new_id("li_"),
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": price["unit_amount"] * qty,
            "amount_tax": 0,
            "amount_total": price["unit_amount"] * qty,
            "currency": price["currency"],
            "description": product_name(st, price),
            "price": copy.deepcopy(price),
            "quantity": qty,
        }
        for price, qty in lines
    ]
    sub_data = p.get("subscription_data") or {}
    trial = sub_data.get("trial_period_days")
    st.session_extra[cs_id] = {
        "trial_period_days": to_int(trial, "subscription_data[trial_period_days]") if trial else 0,
        "subscription_metadata": metadata(sub_data.get("metadata")),
        "payment_intent_metadata": metadata((p.get("payment_intent_data") or {}).get("metadata")),
        "setup_future_usage": (p.get("payment_intent_data") or {}).get("setup_future_usage"),
    }
    return session


def line_items(st: Store, cs_id: str) -> Obj:
    """The session's ``line_items`` (a list object), for ``expand[]=line_items``."""
    return page(list(st.session_items[cs_id]), {}, f"/v1/checkout/sessions/{cs_id}/line_items")


def _retrieve(st: Store, ctx: Ctx) -> Obj:
    s = st.checkout_sessions.get(ctx.path_params["id"])
    if s is None:
        raise missing("checkout.session", ctx.path_params["id"])
    return s


def _list(st: Store, ctx: Ctx) -> Obj:
    p = ctx.params
    keys = [k for k in ("customer", "payment_intent", "status") if k in p]
    items = [s for s in reversed(st.checkout_sessions.values()) if all(s[k] == p[k] for k in keys)]
    return page(items, p, "/v1/checkout/sessions")


def complete(st: Store, session_id: str, *, async_payment: bool) -> list[Obj]:
    """The buyer pays by card (or by a bank debit that settles later: ``payment_status``
    stays ``unpaid``); the events, in Stripe's order."""
    s = st.get("checkout_sessions", session_id)
    if s["status"] != "open":
        raise FakeStripeError(f"checkout session {session_id} is {s['status']}, not open")
    extra = st.session_extra[session_id]
    cus_id = s["customer"]
    email = (st.customers[cus_id]["email"] if cus_id else None) or "jenny.rosen@example.com"
    pm = new_payment_method(st, customer=None, email=email, bank=async_payment)
    events: list[Obj] = []
    if cus_id is None and s["mode"] == "subscription":
        cus_id = s["customer"] = new_customer(st, email=email)["id"]
        events.append(st.event("customer.created", st.customers[cus_id]))
    trial_days = extra["trial_period_days"] if s["mode"] == "subscription" else 0
    s["status"], s["url"] = "complete", None
    s["customer_details"] = {
        "address": copy.deepcopy(pm["billing_details"]["address"]),
        "email": email,
        "name": pm["billing_details"]["name"],
    }
    s["payment_status"] = (
        "no_payment_required" if trial_days else "unpaid" if async_payment else "paid"
    )
    pi_status = "processing" if async_payment else "succeeded"
    if s["mode"] == "payment":
        pi = new_payment_intent(
            st,
            amount=s["amount_total"],
            currency=s["currency"],
            customer=cus_id,
            pm=pm,
            status=pi_status,
            meta=dict(extra["payment_intent_metadata"]),
        )
        s["payment_intent"] = pi["id"]
        if extra.get("setup_future_usage") and cus_id:  # the card is kept for later
            pi["setup_future_usage"] = extra["setup_future_usage"]
            pm["customer"] = cus_id
        events.append(st.event("checkout.session.completed", s))
        if async_payment:
            return [*events, st.event("payment_intent.processing", pi)]
        ch = new_charge(st, pi, succeeded=True)
        return [*events, st.event("charge.succeeded", ch), st.event("payment_intent.succeeded", pi)]
    return events + _complete_subscription(st, s, pm, cus_id, trial_days, pi_status)


def _complete_subscription(
    st: Store, s: Obj, pm: Obj, cus_id: str, trial_days: int, pi_status: str
) -> list[Obj]:
    pm["customer"] = cus_id
    cus = st.customers[cus_id]
    first_card = cus["invoice_settings"]["default_payment_method"] is None
    if first_card:
        cus["invoice_settings"]["default_payment_method"] = pm["id"]
    lines = [(st.prices[li["price"]["id"]], li["quantity"]) for li in st.session_items[s["id"]]]
    sub = new_subscription(
        st,
        customer=cus_id,
        lines=[(price, qty) for price, qty in lines if price["recurring"]],
        pm=pm,
        status="trialing" if trial_days else "active" if pi_status == "succeeded" else "incomplete",
        meta=dict(st.session_extra[s["id"]]["subscription_metadata"]),
    )
    if trial_days:  # the first period is the trial; billing starts when it ends
        trial_end = sub["start_date"] + trial_days * 86400
        sub["trial_start"], sub["trial_end"] = sub["start_date"], trial_end
        sub["billing_cycle_anchor"] = trial_end
        set_period(sub, sub["start_date"], trial_end)
        st.period_index[sub["id"]] = 0
    start, end = sub["current_period_start"], sub["current_period_end"]
    inv = new_invoice(
        st,
        sub=sub,
        lines=lines,
        billing_reason="subscription_create",
        period=(start, start),
        line_period=(start, end),
        trial=bool(trial_days),
    )
    invoice_events = [st.event("invoice.created", inv)]
    finalize(st, inv)
    invoice_events.append(st.event("invoice.finalized", inv))
    if trial_days:
        invoice_events += pay_zero(st, inv)
    else:
        pi = new_payment_intent(
            st,
            amount=inv["amount_due"],
            currency=inv["currency"],
            customer=cus_id,
            pm=pm,
            status=pi_status,
            description="Subscription creation",
        )
        ip = invoice_payment(st, inv, pi)
        if pi_status == "processing":
            invoice_events.append(st.event("payment_intent.processing", pi))
        else:
            ch = new_charge(st, pi, succeeded=True)
            pay_invoice(inv, pi, ip)
            invoice_events += [
                st.event("charge.succeeded", ch),
                st.event("payment_intent.succeeded", pi),
                st.event("invoice.paid", inv),
                st.event("invoice.payment_succeeded", inv),
            ]
    s["subscription"], s["invoice"] = sub["id"], inv["id"]
    events = [
        st.event("checkout.session.completed", s),
        st.event("customer.subscription.created", sub),
    ]
    if first_card:
        previous = {"invoice_settings": {"default_payment_method": None}}
        events.append(st.event("customer.updated", cus, previous=previous))
    return events + invoice_events


def settle_async(st: Store, session_id: str, *, succeeded: bool) -> list[Obj]:
    """The bank debit of a completed session clears or fails."""
    s = st.get("checkout_sessions", session_id)
    if s["status"] != "complete" or s["payment_status"] != "unpaid":
        raise FakeStripeError(f"checkout session {session_id} has no pending payment")
    inv = st.invoices[s["invoice"]] if s["invoice"] else None
    ip = default_payment(st, inv) if inv else None
    pi = st.payment_intents[ip["payment"]["payment_intent"] if ip else s["payment_intent"]]
    sub = st.subscriptions[s["subscription"]] if s["subscription"] else None
    ch = new_charge(st, pi, succeeded=succeeded)
    if succeeded:
        pi["status"], pi["amount_received"] = "succeeded", pi["amount"]
        s["payment_status"] = "paid"
        events = [
            st.event("checkout.session.async_payment_succeeded", s),
            st.event("charge.succeeded", ch),
            st.event("payment_intent.succeeded", pi),
        ]
    else:
        decline(st, pi)
        events = [
            st.event("checkout.session.async_payment_failed", s),
            st.event("charge.failed", ch),
            st.event("payment_intent.payment_failed", pi),
        ]
    if inv is not None and ip is not None and sub is not None:
        prev = {"status": sub["status"]}
        if succeeded:
            pay_invoice(inv, pi, ip)
            events += [st.event("invoice.paid", inv), st.event("invoice.payment_succeeded", inv)]
            sub["status"] = "active"
        else:
            inv.update(attempted=True, attempt_count=inv["attempt_count"] + 1)
            events.append(st.event("invoice.payment_failed", inv))
            sub["status"], sub["ended_at"] = "incomplete_expired", now()
        events.append(st.event("customer.subscription.updated", sub, previous=prev))
    return events


def expire(st: Store, session_id: str) -> list[Obj]:
    """The session times out: ``checkout.session.expired``."""
    s = st.get("checkout_sessions", session_id)
    if s["status"] != "open":
        raise FakeStripeError(f"checkout session {session_id} is {s['status']}, not open")
    s["status"], s["url"] = "expired", None
    return [st.event("checkout.session.expired", s)]


ROUTES = [
    ("POST", "/v1/checkout/sessions", _create),
    ("GET", "/v1/checkout/sessions", _list),
    ("GET", "/v1/checkout/sessions/{id}", _retrieve),
]
