"""Products and prices: the catalog a test sets up (``FakeStripe.create_price``), as the
Dashboard would. No REST endpoints: billing reads prices only inside other objects."""

from __future__ import annotations

from .state import Store
from .wire import FakeStripeError, Obj, new_id, now

__all__ = ["create_price", "product_name"]


def _product(st: Store, name: str) -> Obj:
    for prod in st.products.values():
        if prod["name"] == name:
            return prod
    prod = {
        "id": new_id("prod_", 14),
        "object": "product",
        "active": True,
        "created": now(),
        "livemode": False,
        "metadata": {},
        "name": name,
        "type": "service",
    }
    st.products[prod["id"]] = prod
    return prod


def create_price(
    st: Store,
    *,
    unit_amount: int,
    currency: str = "usd",
    recurring_interval: str | None = None,
    product_name: str = "Credits",
) -> Obj:
    """A price (monthly etc. when ``recurring_interval``) of a product found or made by name."""
    if recurring_interval not in (None, "day", "week", "month", "year"):
        raise FakeStripeError(f"bad interval {recurring_interval!r}")
    price = {
        "id": new_id("price_"),
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": now(),
        "currency": currency.lower(),
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": _product(st, product_name)["id"],
        "recurring": (
            {"interval": recurring_interval, "interval_count": 1, "usage_type": "licensed"}
            if recurring_interval
            else None
        ),
        "type": "recurring" if recurring_interval else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }
    st.prices[price["id"]] = price
    return price


def product_name(st: Store, price: Obj) -> str:
    return str(st.products[price["product"]]["name"])
