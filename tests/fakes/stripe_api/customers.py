"""Customers: create (idempotent), retrieve, search by metadata, update metadata."""

from __future__ import annotations

import re
import secrets

from .state import Ctx, Store
from .wire import ApiError, Obj, metadata, missing, new_id, now, require, to_int

__all__ = ["ROUTES", "customer_ref", "new_customer"]


def new_customer(st: Store, *, email: str | None = None, meta: dict[str, str] | None = None) -> Obj:
    cus: Obj = {
        "id": new_id("cus_", 14),
        "object": "customer",
        "balance": 0,
        "created": now(),
        "currency": None,
        "delinquent": False,
        "email": email,
        "invoice_prefix": secrets.token_hex(4).upper(),
        "invoice_settings": {"default_payment_method": None},
        "livemode": False,
        "metadata": meta or {},
        "name": None,
        "next_invoice_sequence": 1,
    }
    st.customers[cus["id"]] = cus
    return cus


def customer_ref(st: Store, cus_id: str, param: str = "customer") -> Obj:
    """The customer a request names in ``param``, or Stripe's 400."""
    cus = st.customers.get(cus_id)
    if cus is None:
        raise missing("customer", cus_id, param, 400)
    return cus


def _create(st: Store, ctx: Ctx) -> Obj:
    p = ctx.params
    cus = new_customer(st, email=p.get("email") or None, meta=metadata(p.get("metadata")))
    cus["name"] = p.get("name") or None
    ctx.events.append(st.event("customer.created", cus, request=ctx.request_ref))
    return cus


def _retrieve(st: Store, ctx: Ctx) -> Obj:
    cus = st.customers.get(ctx.path_params["id"])
    if cus is None:
        raise missing("customer", ctx.path_params["id"])
    return cus


def _update(st: Store, ctx: Ctx) -> Obj:
    """Email, name and metadata; metadata merges and ``""`` deletes a key, as at Stripe."""
    cus, p = _retrieve(st, ctx), ctx.params
    prev: Obj = {}
    for key in ("email", "name"):
        if key in p and cus[key] != (p[key] or None):
            prev[key], cus[key] = cus[key], p[key] or None
    if "metadata" in p:
        merged = {} if p["metadata"] == "" else dict(cus["metadata"])
        for k, v in metadata(p["metadata"]).items():
            if v:
                merged[k] = v
            else:
                merged.pop(k, None)
        if merged != cus["metadata"]:
            prev["metadata"], cus["metadata"] = cus["metadata"], merged
    if prev:
        ctx.events.append(st.event("customer.updated", cus, previous=prev, request=ctx.request_ref))
    return cus


# the search query language, the part billing uses: field:'value' and
# metadata['key']:'value' clauses joined by AND
_CLAUSE = re.compile(r"""\s*(\w+)(?:\[['"]([^'"]+)['"]\])?\s*:\s*(?:'([^']*)'|"([^"]*)")\s*""")


def _search(st: Store, ctx: Ctx) -> Obj:
    query = str(require(ctx.params, "query"))
    clauses = []
    for part in re.split(r"\sAND\s", query):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise ApiError(400, f"Invalid search query: {query}.", param="query")
        name, key, v1, v2 = m.groups()
        clauses.append((name, key, v1 if v1 is not None else v2))

    def match(cus: Obj) -> bool:
        for name, key, value in clauses:
            actual = (cus.get(name) or {}).get(key) if key else cus.get(name)
            if str(actual or "") != value:
                return False
        return True

    found = [c for c in reversed(st.customers.values()) if match(c)]
    limit = to_int(ctx.params.get("limit", 10), "limit")
    return {
        "object": "search_result",
        "data": found[:limit],
        "has_more": len(found) > limit,
        "next_page": None,
        "url": "/v1/customers/search",
    }


ROUTES = [
    ("POST", "/v1/customers", _create),
    ("GET", "/v1/customers/search", _search),
    ("GET", "/v1/customers/{id}", _retrieve),
    ("POST", "/v1/customers/{id}", _update),
]
