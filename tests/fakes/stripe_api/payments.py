"""Payment methods, PaymentIntents, charges and refunds.

The buyer's card (or bank account, for debits that settle later) is made when a Checkout
completes; a PaymentIntent per payment, a charge per attempt. Refunds are the test's
(``refund_charge``): billing only reads a charge's ``amount_refunded``. REST: charges
(retrieve, list by customer); payment intents and methods are read expanded.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from .state import Ctx, Store
from .wire import FakeStripeError, Obj, missing, money, new_id, now, page

__all__ = ["ROUTES", "decline", "new_charge", "new_payment_intent", "new_payment_method", "refund"]


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
]
