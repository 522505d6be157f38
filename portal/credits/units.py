"""Ledger units. One credit is 10^9 units, so a US$0.00004 call (the cheapest model's
short call) is tens of thousands of units and rounding stays far below 1%."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

__all__ = ["UNITS_PER_CREDIT", "credits_to_units", "format_units", "usd_to_units"]

UNITS_PER_CREDIT = 1_000_000_000
_QUANTUM = Decimal(1) / UNITS_PER_CREDIT


def credits_to_units(text: str | int | Decimal) -> int:
    """Parse a decimal number of credits ("12.5", "-3") into integer units, exactly."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError(f"not a number of credits: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a number of credits: {text!r}")
    if value != value.quantize(_QUANTUM, rounding=ROUND_HALF_UP):
        raise ValueError(f"credits have at most 9 decimal places: {text!r}")
    return int(value * UNITS_PER_CREDIT)


def usd_to_units(cost_usd: float | Decimal, *, usd_per_credit: Decimal, markup: Decimal) -> int:
    """Convert an upstream cost in US dollars to units charged (half-up, never negative)."""
    cost = Decimal(str(cost_usd)) if not isinstance(cost_usd, Decimal) else cost_usd
    if cost <= 0:
        return 0
    units = cost * markup / usd_per_credit * UNITS_PER_CREDIT
    return int(units.to_integral_value(rounding=ROUND_HALF_UP))


def format_units(units: int) -> str:
    """Units as a human decimal number of credits ("12.5", "-0.000042")."""
    value = Decimal(units) / UNITS_PER_CREDIT
    text = format(value.quantize(_QUANTUM), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
