"""Invoices of subscriptions, and the invoice payments that tie them to PaymentIntents.

Shapes of the SDK's API version: an invoice names its subscription at
``parent.subscription_details.subscription`` and its lines' prices at
``lines.data[].pricing.price_details.price``; a coupon on the subscription shows as
``discounts`` and ``discount_amounts``. REST: retrieve, list (customer, status), and
invoice payments listed by ``payment[payment_intent]``.
"""

from __future__ import annotations

from .payments import decline, new_charge, new_payment_intent, new_payment_method
from .prices import product_name
from .state import Ctx, Store
from .wire import Obj, missing, money, new_id, now, page

__all__ = [
    "ROUTES",
    "charge_invoice",
    "default_payment",
    "finalize",
    "invoice_payment",
    "new_invoice",
    "pay_invoice",
    "pay_zero",
]


def _line(
    st: Store, inv_id: str, sub: Obj, price: Obj, qty: int, *, period: Obj, trial: bool
) -> Obj:
    amount = 0 if trial else price["unit_amount"] * qty
    discounts = [d for d in sub["discounts"] if d in st.discounts]
    item = next((i for i in sub["items"]["data"] if i["price"]["id"] == price["id"]), None)
    name = product_name(st, price)
    description = f"Trial period for {name}" if trial else f"{qty} × {name}"
    if price["recurring"] and not trial:
        description += f" (at {money(price['unit_amount'], price['currency'])} / "
        description += f"{price['recurring']['interval']})"
    return {
        "id": new_id("il_"),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": description,
        "discount_amounts": [
            {"amount": amount * st.discounts[d]["percent_off"] // 100, "discount": d}
            for d in discounts
        ],
        "discounts": list(discounts),
        "invoice": inv_id,
        "livemode": False,
        "metadata": {},
        "parent": (
            {
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": False,
                    "subscription": sub["id"],
                    "subscription_item": item["id"],
                },
                "type": "subscription_item_details",
            }
            if item is not None
            else None
        ),
        "period": period,
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        "quantity": qty,
        "subtotal": amount,
    }


def new_invoice(
    st: Store,
    *,
    sub: Obj,
    lines: list[tuple[Obj, int]],
    billing_reason: str,
    period: tuple[int, int],
    line_period: tuple[int, int],
    trial: bool = False,
) -> Obj:
    """A draft invoice of ``sub`` for ``lines`` (price, quantity), coupons applied."""
    cus = st.customers[sub["customer"]]
    inv_id = new_id("in_")
    discounts = [d for d in sub["discounts"] if d in st.discounts]
    data = [
        _line(
            st,
            inv_id,
            sub,
            price,
            qty,
            period={"end": line_period[1], "start": line_period[0]},
            trial=trial,
        )
        for price, qty in lines
    ]
    subtotal = sum(line["amount"] for line in data)
    discounted = sum(d["amount"] for line in data for d in line["discount_amounts"])
    total = subtotal - discounted
    cus["next_invoice_sequence"] += 1
    inv = {
        "id": inv_id,
        "object": "invoice",
        "amount_due": total,
        "amount_paid": 0,
        "amount_remaining": total,
        "attempt_count": 0,
        "attempted": False,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": now(),
        "currency": data[0]["currency"],
        "customer": cus["id"],
        "customer_email": cus["email"],
        "discounts": list(discounts),
        "lines": {
            "object": "list",
            "data": data,
            "has_more": False,
            "url": f"/v1/invoices/{inv_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(sub["metadata"]),
                "subscription": sub["id"],
            },
            "type": "subscription_details",
        },
        "period_end": period[1],
        "period_start": period[0],
        "status": "draft",
        "status_transitions": {"finalized_at": None, "paid_at": None},
        "subtotal": subtotal,
        "total": total,
        "total_discount_amounts": [{"amount": discounted, "discount": d} for d in discounts],
    }
    st.invoices[inv_id] = inv
    sub["latest_invoice"] = inv_id
    return inv


def finalize(st: Store, inv: Obj) -> None:
    cus = st.customers[inv["customer"]]
    inv["status"] = "open"
    inv["number"] = f"{cus['invoice_prefix']}-{cus['next_invoice_sequence'] - 1:04d}"
    inv["status_transitions"]["finalized_at"] = now()


def invoice_payment(st: Store, inv: Obj, pi: Obj) -> Obj:
    """The invoice's (new default) payment by ``pi``."""
    for p in st.invoice_payments.values():
        if p["invoice"] == inv["id"]:
            p["is_default"] = False
    ip = {
        "id": new_id("inpay_"),
        "object": "invoice_payment",
        "amount_paid": None,
        "amount_requested": inv["amount_due"],
        "created": now(),
        "currency": inv["currency"],
        "invoice": inv["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"payment_intent": pi["id"], "type": "payment_intent"},
        "status": "open",
    }
    st.invoice_payments[ip["id"]] = ip
    return ip


def default_payment(st: Store, inv: Obj) -> Obj:
    return next(
        p for p in st.invoice_payments.values() if p["invoice"] == inv["id"] and p["is_default"]
    )


def pay_zero(st: Store, inv: Obj) -> list[Obj]:
    """A $0 invoice (trial, 100% coupon) is paid at once, with no PaymentIntent."""
    inv.update(status="paid", amount_paid=0, amount_remaining=0, next_payment_attempt=None)
    inv["status_transitions"]["paid_at"] = now()
    return [st.event("invoice.paid", inv), st.event("invoice.payment_succeeded", inv)]


def pay_invoice(inv: Obj, pi: Obj, ip: Obj) -> None:
    inv.update(
        status="paid",
        attempted=True,
        attempt_count=inv["attempt_count"] + 1,
        amount_paid=inv["amount_due"],
        amount_remaining=0,
        next_payment_attempt=None,
    )
    inv["status_transitions"]["paid_at"] = now()
    ip.update(status="paid", amount_paid=pi["amount"])


def charge_invoice(st: Store, inv: Obj, sub: Obj, *, succeeded: bool) -> list[Obj]:
    """Stripe charges the default payment method for an open invoice."""
    if inv["amount_due"] == 0:
        return pay_zero(st, inv)
    cus = st.customers[inv["customer"]]
    pm_id = sub["default_payment_method"] or cus["invoice_settings"]["default_payment_method"]
    pm = st.payment_methods.get(pm_id or "") or new_payment_method(
        st, customer=cus["id"], email=cus["email"], bank=False
    )
    pi = new_payment_intent(
        st,
        amount=inv["amount_due"],
        currency=inv["currency"],
        customer=cus["id"],
        pm=pm,
        status="succeeded" if succeeded else "requires_payment_method",
        description="Subscription update" if succeeded else None,
    )
    ip = invoice_payment(st, inv, pi)
    ch = new_charge(st, pi, succeeded=succeeded)
    if succeeded:
        pay_invoice(inv, pi, ip)
        return [
            st.event("charge.succeeded", ch),
            st.event("payment_intent.succeeded", pi),
            st.event("invoice.paid", inv),
            st.event("invoice.payment_succeeded", inv),
        ]
    decline(st, pi)
    inv.update(attempted=True, attempt_count=inv["attempt_count"] + 1)
    inv["next_payment_attempt"] = now() + 3 * 86400
    return [
        st.event("charge.failed", ch),
        st.event("payment_intent.payment_failed", pi),
        st.event("invoice.payment_failed", inv),
    ]


def _retrieve(st: Store, ctx: Ctx) -> Obj:
    inv = st.invoices.get(ctx.path_params["id"])
    if inv is None:
        raise missing("invoice", ctx.path_params["id"])
    return inv


def _list(st: Store, ctx: Ctx) -> Obj:
    p = ctx.params
    items = [
        inv
        for inv in reversed(st.invoices.values())
        if ("customer" not in p or inv["customer"] == p["customer"])
        and ("status" not in p or inv["status"] == p["status"])
    ]
    return page(items, p, "/v1/invoices")


def _list_payments(st: Store, ctx: Ctx) -> Obj:
    p = ctx.params
    pi_id = (p.get("payment") or {}).get("payment_intent")
    items = [
        ip
        for ip in reversed(st.invoice_payments.values())
        if ("invoice" not in p or ip["invoice"] == p["invoice"])
        and (pi_id is None or ip["payment"]["payment_intent"] == pi_id)
    ]
    return page(items, p, "/v1/invoice_payments")


ROUTES = [
    ("GET", "/v1/invoices", _list),
    ("GET", "/v1/invoices/{id}", _retrieve),
    ("GET", "/v1/invoice_payments", _list_payments),
]
