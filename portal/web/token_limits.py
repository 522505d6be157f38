"""A token's spending limit as people type it (the Tokens page, the consent page of a
connecting app, the JSON API): credits as a decimal, and a reset."""

from __future__ import annotations

from portal.credits.units import credits_to_units
from portal.tokens.spending import RESET_CHOICES, SpendingLimit, parse_limit

__all__ = ["RESET_CHOICES", "spending_limit_from"]


def spending_limit_from(limit: str | None, reset: str | None) -> SpendingLimit | None:
    """The limit typed (`""`: none) with its reset; ValueError phrased for the person."""
    text = (limit or "").strip()
    if not text:
        return None
    try:
        units = credits_to_units(text)
    except ValueError:
        raise ValueError("Give the spending limit as a number of credits, e.g. 5.") from None
    if units <= 0:
        raise ValueError("A spending limit must be more than 0 credits (leave it empty for none).")
    try:
        return parse_limit(units, reset)
    except ValueError:
        raise ValueError("Pick when the limit resets: daily, weekly, monthly or never.") from None
