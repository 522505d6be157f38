"""Disputes of a charge: opened, escalated and decided by the test; REST: retrieve, and
list by charge.

A chargeback withdraws the disputed amount at once (``needs_response``, then
``charge.dispute.funds_withdrawn``); an inquiry moves no money (``warning_needs_response``)
until it is escalated. A won chargeback gets its money back
(``charge.dispute.funds_reinstated``) before ``charge.dispute.closed``.
"""

from __future__ import annotations

from .state import Ctx, Store
from .wire import FakeStripeError, Obj, missing, new_id, now, page

__all__ = ["ROUTES", "close", "escalate", "open_dispute"]


def _money_moved(dp: Obj) -> None:
    """Money withdrawn or reinstated: a balance transaction (billing reads only status)."""
    dp["balance_transactions"].append(new_id("txn_"))


def open_dispute(st: Store, ch: Obj, *, reason: str, inquiry: bool) -> list[Obj]:
    created = now()
    dp = {
        "id": new_id("dp_"),
        "object": "dispute",
        "amount": ch["amount"] - ch["amount_refunded"],
        "balance_transactions": [],
        "charge": ch["id"],
        "created": created,
        "currency": ch["currency"],
        "evidence_details": {"due_by": created + 7 * 86400, "has_evidence": False},
        "is_charge_refundable": inquiry,
        "livemode": False,
        "metadata": {},
        "payment_intent": ch["payment_intent"],
        "reason": reason,
        "status": "warning_needs_response" if inquiry else "needs_response",
    }
    st.disputes[dp["id"]] = dp
    ch["disputed"] = True
    events = [st.event("charge.dispute.created", dp)]
    if not inquiry:
        _money_moved(dp)
        events.append(st.event("charge.dispute.funds_withdrawn", dp))
    return events


def escalate(st: Store, dp: Obj) -> list[Obj]:
    """An inquiry becomes a chargeback: the money is withdrawn now."""
    if not dp["status"].startswith("warning_") or dp["status"] == "warning_closed":
        raise FakeStripeError(f"dispute {dp['id']} is {dp['status']}, not an inquiry")
    dp["status"], dp["is_charge_refundable"] = "needs_response", False
    _money_moved(dp)
    return [st.event("charge.dispute.funds_withdrawn", dp)]


def close(st: Store, dp: Obj, *, won: bool) -> list[Obj]:
    """Decided: won or lost (an inquiry closes as ``warning_closed``)."""
    if dp["status"] in ("won", "lost", "warning_closed"):
        raise FakeStripeError(f"dispute {dp['id']} is already {dp['status']}")
    prev = {"status": dp["status"]}
    events = []
    if dp["status"].startswith("warning_"):
        dp["status"] = "warning_closed"
    elif won:
        dp["status"] = "won"
        _money_moved(dp)
        events.append(st.event("charge.dispute.funds_reinstated", dp))
    else:
        dp["status"] = "lost"
    events.append(st.event("charge.dispute.closed", dp, previous=prev))
    return events


def _retrieve(st: Store, ctx: Ctx) -> Obj:
    dp = st.disputes.get(ctx.path_params["id"])
    if dp is None:
        raise missing("dispute", ctx.path_params["id"])
    return dp


def _list(st: Store, ctx: Ctx) -> Obj:
    p = ctx.params
    items = [
        dp
        for dp in reversed(st.disputes.values())
        if ("charge" not in p or dp["charge"] == p["charge"])
        and ("payment_intent" not in p or dp["payment_intent"] == p["payment_intent"])
    ]
    return page(items, p, "/v1/disputes")


ROUTES = [
    ("GET", "/v1/disputes", _list),
    ("GET", "/v1/disputes/{id}", _retrieve),
]
