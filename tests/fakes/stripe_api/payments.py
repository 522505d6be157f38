"""Payment methods, PaymentIntents, charges and refunds.

The buyer's card (or bank account, for debits that settle later) is made when a Checkout
completes; a PaymentIntent per payment, a charge per attempt. Refunds are the test's
(``refund_charge``): billing only reads a charge's ``amount_refunded``. REST: charges
(retrieve, list by customer); payment intents and methods are read expanded.

Off-session payments (auto top-up): ``POST /v1/payment_intents`` with ``confirm`` and
``off_session`` charges a card saved to the customer (a Checkout with
``setup_future_usage``, or the customer's default), as the card's bank decides
(``Store.off_session_outcomes`` by customer: ``succeed``, ``decline``,
``authentication_required``, or ``processing``: the bank answers later, when the test
calls ``FakeStripe.finish_processing``). A refusal is Stripe's 402 ``card_error`` carrying the
PaymentIntent, which is left ``requires_payment_method``; both outcomes send their
events after the response. ``GET /v1/payment_intents/{id}`` and ``GET
/v1/payment_methods?customer=…&type=card`` read them.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from .customers import customer_ref
from .state import Ctx, Store
from .wire import (
    ApiError,
    FakeStripeError,
    Obj,
    metadata,
    missing,
    money,
    new_id,
    now,
    page,
    require,
    to_int,
)

__all__ = [
    "ROUTES",
    "decline",
    "finish_processing",
    "new_charge",
    "new_payment_intent",
    "new_payment_method",
    "refund",
]


def new_payment_method(st: Store, *, customer: str | None, email: str | None, bank: bool) -> Obj:
    pm: Obj = {
        "id": new_id("pm_"),
        "object": "payment_method",
        "billing_details": {
            "address": {"country": "US", "postal_code": "42424"},
            "email": email,
            "name": "Jenny Rosen",
        },
        "created": now(),
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
            "last4": "6789",
            "routing_number": "110000000",
        }
    else:
        pm["type"] = "card"
        pm["card"] = {
            "brand": st.card_brand,
            "country": "US",
            "display_brand": st.card_brand,
            "exp_month": 12,
            "exp_year": datetime.now(UTC).year + 3,
            "funding": "credit",
            "last4": st.card_last4,
        }
    st.payment_methods[pm["id"]] = pm
    return pm


def new_payment_intent(
    st: Store,
    *,
    amount: int,
    currency: str,
    customer: str | None,
    pm: Obj,
    status: str,
    meta: dict[str, str] | None = None,
    description: str | None = None,
) -> Obj:
    pi_id = new_id("pi_")
    pi = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "capture_method": "automatic_async",
        "client_secret": f"{pi_id}_secret_{new_id('', 25)}",
        "created": now(),
        "currency": currency,
        "customer": customer,
        "description": description,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": meta or {},
        "payment_method": pm["id"],
        "payment_method_types": [pm["type"]],
        "status": status,
    }
    st.payment_intents[pi_id] = pi
    return pi


def decline(st: Store, pi: Obj) -> None:
    """The payment failed: the intent wants another payment method."""
    pi["last_payment_error"] = {
        "charge": pi["latest_charge"],
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
        "payment_method": copy.deepcopy(st.payment_methods[pi["payment_method"]]),
        "type": "card_error",
    }
    pi.update(status="requires_payment_method", amount_received=0, payment_method=None)


def new_charge(st: Store, pi: Obj, *, succeeded: bool) -> Obj:
    pm = st.payment_methods[pi["payment_method"]]
    if pm["type"] == "card":
        card = pm["card"]
        details: Obj = {
            "card": {k: card[k] for k in ("brand", "country", "exp_month", "exp_year", "last4")},
            "type": "card",
        }
        details["card"]["network"] = card["brand"]
    else:
        bank = pm["us_bank_account"]
        details = {"type": "us_bank_account", "us_bank_account": dict(bank)}
    ch = {
        "id": new_id("ch_"),
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": pi["amount"] if succeeded else 0,
        "amount_refunded": 0,
        "balance_transaction": new_id("txn_") if succeeded else None,
        "billing_details": copy.deepcopy(pm["billing_details"]),
        "captured": succeeded,
        "created": now(),
        "currency": pi["currency"],
        "customer": pi["customer"],
        "description": pi["description"],
        "disputed": False,
        "failure_code": None if succeeded else "card_declined",
        "failure_message": None if succeeded else "Your card was declined.",
        "livemode": False,
        "metadata": dict(pi["metadata"]),
        "outcome": (
            {"network_status": "approved_by_network", "type": "authorized"}
            if succeeded
            else {"network_status": "declined_by_network", "type": "issuer_declined"}
        ),
        "paid": succeeded,
        "payment_intent": pi["id"],
        "payment_method": pm["id"],
        "payment_method_details": details,
        "refunded": False,
        "status": "succeeded" if succeeded else "failed",
    }
    st.charges[ch["id"]] = ch
    pi["latest_charge"] = ch["id"]
    return ch


def refund(st: Store, ch: Obj, amount: int | None) -> list[Obj]:
    """Refund ``amount`` (default: what is left) of a charge: ``charge.refunded``."""
    remaining = ch["amount"] - ch["amount_refunded"]
    amount = remaining if amount is None else amount
    if ch["status"] != "succeeded" or not 0 < amount <= remaining:
        raise FakeStripeError(
            f"cannot refund {money(amount, ch['currency'])} of charge {ch['id']} "
            f"({money(remaining, ch['currency'])} unrefunded)"
        )
    prev = {"amount_refunded": ch["amount_refunded"], "refunded": ch["refunded"]}
    ch["amount_refunded"] += amount
    ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
    if not ch["refunded"]:
        del prev["refunded"]
    return [st.event("charge.refunded", ch, previous=prev)]


_REFUSALS = {
    "decline": ("card_declined", "Your card was declined.", "generic_decline"),
    "authentication_required": (
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
        "authentication_required",
    ),
}


def _create_intent(st: Store, ctx: Ctx) -> Obj:
    """A PaymentIntent; with ``confirm`` and ``off_session``, charged at once."""
    p = ctx.params
    amount = to_int(require(p, "amount"), "amount")
    if amount < 50:
        raise ApiError(400, "Amount must be at least $0.50 usd", code="amount_too_small")
    currency = str(require(p, "currency")).lower()
    cus = customer_ref(st, str(require(p, "customer")))
    pm = st.payment_methods.get(str(require(p, "payment_method")))
    if pm is None:
        raise missing("payment_method", str(p["payment_method"]), "payment_method", 400)
    if pm["customer"] != cus["id"]:
        raise ApiError(
            400,
            "The provided PaymentMethod was previously used with a PaymentIntent without "
            "Customer attachment, shared with a connected account without Customer "
            "attachment, or was detached from a Customer. It may not be used again.",
            param="payment_method",
        )
    confirm = str(p.get("confirm", "false")).lower() == "true"
    off_session = str(p.get("off_session", "false")).lower() == "true"
    if not (confirm and off_session):
        raise ApiError(400, "The fake charges only with confirm=true and off_session=true.")
    pi = new_payment_intent(
        st,
        amount=amount,
        currency=currency,
        customer=cus["id"],
        pm=pm,
        status="processing",
        meta=metadata(p.get("metadata")),
        description=p.get("description") or None,
    )
    outcome = st.off_session_outcomes.get(cus["id"], "succeed")
    if outcome == "processing":  # the bank answers later: `finish_processing`
        return pi
    if outcome == "succeed":
        ctx.events += finish_processing(st, pi, succeeded=True)
        return pi
    code, message, decline_code = _REFUSALS[outcome]
    ch = new_charge(st, pi, succeeded=False)
    decline(st, pi)
    pi["last_payment_error"].update(code=code, decline_code=decline_code, message=message)
    ctx.events += [st.event("charge.failed", ch), st.event("payment_intent.payment_failed", pi)]
    raise ApiError(
        402,
        message,
        type="card_error",
        code=code,
        extra={
            "decline_code": decline_code,
            "charge": ch["id"],
            "payment_intent": copy.deepcopy(pi),
            "payment_method": copy.deepcopy(pm),
        },
    )


def finish_processing(st: Store, pi: Obj, *, succeeded: bool) -> list[Obj]:
    """A processing PaymentIntent's answer from the bank: paid, or declined (the intent
    back to ``requires_payment_method``); the events Stripe sends for it."""
    if pi["status"] != "processing":
        raise FakeStripeError(f"{pi['id']} is {pi['status']}, not processing")
    ch = new_charge(st, pi, succeeded=succeeded)
    if succeeded:
        pi.update(status="succeeded", amount_received=pi["amount"])
        return [st.event("charge.succeeded", ch), st.event("payment_intent.succeeded", pi)]
    decline(st, pi)
    return [st.event("charge.failed", ch), st.event("payment_intent.payment_failed", pi)]


def _retrieve_intent(st: Store, ctx: Ctx) -> Obj:
    pi = st.payment_intents.get(ctx.path_params["id"])
    if pi is None:
        raise missing("payment_intent", ctx.path_params["id"])
    return pi


def _list_methods(st: Store, ctx: Ctx) -> Obj:
    p = ctx.params
    cus = customer_ref(st, str(require(p, "customer")))
    items = [
        pm
        for pm in reversed(st.payment_methods.values())
        if pm["customer"] == cus["id"] and ("type" not in p or pm["type"] == p["type"])
    ]
    return page(items, p, "/v1/payment_methods")


def _retrieve(st: Store, ctx: Ctx) -> Obj:
    ch = st.charges.get(ctx.path_params["id"])
    if ch is None:
        raise missing("charge", ctx.path_params["id"])
    return ch


def _list(st: Store, ctx: Ctx) -> Obj:
    p = ctx.params
    items = [
        ch
        for ch in reversed(st.charges.values())
        if ("customer" not in p or ch["customer"] == p["customer"])
        and ("payment_intent" not in p or ch["payment_intent"] == p["payment_intent"])
    ]
    return page(items, p, "/v1/charges")


ROUTES = [
    ("GET", "/v1/charges", _list),
    ("GET", "/v1/charges/{id}", _retrieve),
    ("POST", "/v1/payment_intents", _create_intent),
    ("GET", "/v1/payment_intents/{id}", _retrieve_intent),
    ("GET", "/v1/payment_methods", _list_methods),
]
