"""Ledger units. One credit is 10^9 units, so a US$0.00004 call (the cheapest model's
short call) is tens of thousands of units and rounding stays far below 1%."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from portal.db.columns import credit_units_column, unit_base_name

__all__ = [
    "MAX_UNITS",
    "UNITS_PER_CREDIT",
    "credit_units_column",
    "credits_to_units",
    "format_units",
    "labelled_amount",
    "unit_base_name",
    "usd_to_units",
]

UNITS_PER_CREDIT = 1_000_000_000
MAX_UNITS = 2**63 - 1  # the ledger's BIGINT columns
_QUANTUM = Decimal(1) / UNITS_PER_CREDIT
# Plain ASCII decimals only: Decimal() also takes "NaN", "1_000" and non-ASCII digits.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")


def credits_to_units(text: str | int | Decimal) -> int:
    """Parse a decimal number of credits ("12.5", "-3") into integer units, exactly."""
    raw = str(text).strip()
    if not _DECIMAL.fullmatch(raw):
        raise ValueError(f"not a number of credits: {text!r}")
    units = Decimal(raw).scaleb(9)  # exact: only moves the decimal point
    if units != units.to_integral_value():
        raise ValueError(f"credits have at most 9 decimal places: {text!r}")
    if abs(units) > MAX_UNITS:
        raise ValueError(f"too many credits: {text!r}")
    return int(units)


def usd_to_units(cost_usd: float | Decimal, *, usd_per_credit: Decimal, markup: Decimal) -> int:
    """Convert an upstream cost in US dollars to units charged (half-up, never negative)."""
    cost = Decimal(str(cost_usd)) if not isinstance(cost_usd, Decimal) else cost_usd
    if not cost.is_finite():
        raise ValueError(f"not a cost in US dollars: {cost_usd!r}")
    if cost <= 0:
        return 0
    units = cost * markup / usd_per_credit * UNITS_PER_CREDIT
    return int(units.to_integral_value(rounding=ROUND_HALF_UP))


def format_units(units: int) -> str:
    """Units as a human decimal number of credits ("12.5", "-0.000042")."""
    value = Decimal(units) / UNITS_PER_CREDIT
    text = format(value.quantize(_QUANTUM), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def labelled_amount(base_name: str, units: int) -> dict[str, int | str]:
    """`{"<base>_units": 42000, "<base>_credits": "0.000042"}`."""
    return {f"{base_name}_units": units, f"{base_name}_credits": format_units(units)}
