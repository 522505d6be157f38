"""Billing Portal sessions (REST: create) and the hosted portal page they point at."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import HTMLResponse

from .customers import customer_ref
from .prices import product_name
from .state import Ctx, Store
from .wire import Obj, money, new_id, now, require

__all__ = ["ROUTES", "html_page", "portal_page"]


def _create(st: Store, ctx: Ctx) -> Obj:
    cus = customer_ref(st, require(ctx.params, "customer"))
    bps_id = new_id("bps_")
    portal = {
        "id": bps_id,
        "object": "billing_portal.session",
        "configuration": "bpc_fakedefaultconfig00000",
        "created": now(),
        "customer": cus["id"],
        "flow": None,
        "livemode": False,
        "locale": None,
        "on_behalf_of": None,
        "return_url": ctx.params.get("return_url"),
        "url": f"{st.url}/portal/{bps_id}",
    }
    st.billing_portal_sessions[bps_id] = portal
    return portal


def html_page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>",
        status_code=status,
    )


def portal_page(st: Store, request: Request) -> HTMLResponse:
    """The customer's plans and card, and the way back (``return_url``)."""
    with st.lock:
        portal = st.billing_portal_sessions.get(request.path_params["id"])
        if portal is None:
            return html_page("Not found", "<h1>Something went wrong</h1>", 404)
        cus = st.customers[portal["customer"]]
        subs = [
            s
            for s in st.subscriptions.values()
            if s["customer"] == cus["id"] and s["status"] != "canceled"
        ]
        pm = st.payment_methods.get(cus["invoice_settings"]["default_payment_method"] or "")
        rows = []
        for sub in subs:
            price = sub["items"]["data"][0]["price"]
            ends = datetime.fromtimestamp(sub["current_period_end"], UTC).date().isoformat()
            rows.append(
                f'<li data-subscription="{sub["id"]}">{html.escape(product_name(st, price))} '
                f"{money(price['unit_amount'], price['currency'])} "
                f"({html.escape(sub['status'])}, renews {ends})</li>"
            )
    card = (
        f'<p id="card">{html.escape(pm["card"]["brand"])} •••• {pm["card"]["last4"]}</p>'
        if pm and pm["type"] == "card"
        else ""
    )
    body = (
        f"<h1>Billing portal (test mode)</h1><p>{html.escape(cus['email'] or '')}</p>"
        f'{card}<ul id="subscriptions">{"".join(rows)}</ul>'
        f'<a id="return" href="{html.escape(portal["return_url"] or "/")}">Return</a>'
    )
    return html_page("Billing portal", body)


ROUTES = [("POST", "/v1/billing_portal/sessions", _create)]
