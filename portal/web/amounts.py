"""Amounts as a person reads them on a page: credits with at most 4 significant decimals
(`12.3457`, `0.00004212`), and their worth in US dollars where the operator set
`workforce_gateway.credits.usd_per_credit`. Exports and the JSON API keep the exact
values (`portal.credits.units.format_units`); pages show those on hover."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from portal.config.plugin_settings import PluginSettings
from portal.credits.units import UNITS_PER_CREDIT

__all__ = ["SIGNIFICANT_DECIMALS", "screen_credits", "screen_usd", "usd_rate"]

SIGNIFICANT_DECIMALS = 4


def _rounded(value: Decimal) -> Decimal:
    """At most 4 decimals from 1 up; below 1, at most 4 significant digits."""
    if value == 0:
        return Decimal(0)
    if abs(value) >= 1:
        return value.quantize(Decimal(1).scaleb(-SIGNIFICANT_DECIMALS), ROUND_HALF_UP)
    first = value.adjusted()  # the exponent of the first significant digit (< 0 here)
    return value.quantize(Decimal(1).scaleb(first - SIGNIFICANT_DECIMALS + 1), ROUND_HALF_UP)


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def screen_credits(units: int) -> str:
    """Ledger units as credits for a page: `-0.00004212`, `12.3457`, `3`."""
    return _plain(_rounded(Decimal(units) / UNITS_PER_CREDIT))


def screen_usd(units: int, usd_per_credit: Decimal) -> str:
    """What `units` are worth in dollars: cents from $1 up (`$12.35`), else at most 4
    significant digits (`$0.00004212`, `$0.50`); `-$0.42` below zero."""
    value = Decimal(units) / UNITS_PER_CREDIT * usd_per_credit
    if abs(value) >= 1:
        text = format(abs(value).quantize(Decimal("0.01"), ROUND_HALF_UP), "f")
    else:
        text = _plain(abs(_rounded(value)))
        whole, _, decimals = text.partition(".")
        text = f"{whole}.{decimals.ljust(2, '0')}"
    return f"{'-' if value < 0 else ''}${text}"


def usd_rate(plugin: PluginSettings) -> Decimal | None:
    """The dollar worth of one credit, when the operator set it in config.yaml."""
    credits = plugin.credits
    return credits.usd_per_credit if "usd_per_credit" in credits.model_fields_set else None
