"""Credits are integer units: operators' decimals parse exactly, costs round half-up."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.credits.units import (
    MAX_UNITS,
    UNITS_PER_CREDIT,
    credits_to_units,
    format_units,
    usd_to_units,
)

ONE = Decimal(1)


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1", UNITS_PER_CREDIT),
        ("12.5", 12_500_000_000),
        ("-3", -3 * UNITS_PER_CREDIT),
        (" +0.5 ", 500_000_000),
        ("0.000000001", 1),
        ("-0.000000001", -1),
        ("1e-9", 1),
        ("2E3", 2000 * UNITS_PER_CREDIT),
        (".25", 250_000_000),
        ("1.500000000000", 1_500_000_000),  # trailing zeros are not extra precision
        # A float would lose the last digits of each of these.
        ("12345678.123456789", 12_345_678_123_456_789),
        ("0.1", 100_000_000),
        ("9223372036.854775807", MAX_UNITS),
        ("-9223372036.854775807", -MAX_UNITS),
        (Decimal("0.3"), 300_000_000),
        (7, 7 * UNITS_PER_CREDIT),
    ],
)
def test_credits_parse_exactly(text: str | Decimal | int, units: int) -> None:
    parsed = credits_to_units(text)
    assert parsed == units
    assert type(parsed) is int


@pytest.mark.parametrize(
    "text",
    ["", "  ", "abc", "1,5", "1_000", "0x10", "NaN", "nan", "sNaN", "inf", "-Infinity",
     "1.2.3", "--1", "1e", "١٢", "True"],
)  # fmt: skip
def test_junk_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a number of credits"):
        credits_to_units(text)


@pytest.mark.parametrize("text", ["1.0000000001", "0.0000000005", "1e-10", "1e-400"])
def test_more_than_nine_decimals_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="at most 9 decimal places"):
        credits_to_units(text)


@pytest.mark.parametrize("text", ["9223372036.854775808", "99999999999", "1e400", "-1e30"])
def test_amounts_beyond_the_ledger_columns_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="too many credits"):
        credits_to_units(text)


@pytest.mark.parametrize(
    ("units", "text"),
    [
        (0, "0"),
        (UNITS_PER_CREDIT, "1"),
        (12_500_000_000, "12.5"),
        (-42_000, "-0.000042"),
        (1, "0.000000001"),
        (MAX_UNITS, "9223372036.854775807"),
        (-MAX_UNITS, "-9223372036.854775807"),
    ],
)
def test_format_round_trips(units: int, text: str) -> None:
    assert format_units(units) == text
    assert credits_to_units(format_units(units)) == units


def test_format_round_trips_across_magnitudes() -> None:
    for exponent in range(19):
        for units in (10**exponent, 10**exponent + 7, -(10**exponent) - 3):
            assert credits_to_units(format_units(units)) == units


def test_usd_to_units_rounds_half_up() -> None:
    # 1 credit = US$1: one unit is US$0.000000001.
    assert usd_to_units(Decimal("0.0000000005"), usd_per_credit=ONE, markup=ONE) == 1
    assert usd_to_units(Decimal("0.00000000049999"), usd_per_credit=ONE, markup=ONE) == 0
    assert usd_to_units(Decimal("0.0000000015"), usd_per_credit=ONE, markup=ONE) == 2
    assert usd_to_units(Decimal("0.0000000025"), usd_per_credit=ONE, markup=ONE) == 3


def test_usd_to_units_applies_markup_and_credit_value() -> None:
    cost = Decimal("0.002")
    assert usd_to_units(cost, usd_per_credit=ONE, markup=Decimal("1.5")) == 3_000_000
    # 1 credit = 1 US cent: the same cost is 100 times as many credits.
    assert usd_to_units(cost, usd_per_credit=Decimal("0.01"), markup=ONE) == 200_000_000


def test_usd_to_units_never_credits_and_refuses_garbage() -> None:
    assert usd_to_units(0, usd_per_credit=ONE, markup=ONE) == 0
    assert usd_to_units(Decimal("-0.01"), usd_per_credit=ONE, markup=ONE) == 0
    for garbage in (float("nan"), float("inf"), Decimal("NaN")):
        with pytest.raises(ValueError):
            usd_to_units(garbage, usd_per_credit=ONE, markup=ONE)


def test_the_cheapest_short_call_is_priced_within_one_percent() -> None:
    """US$0.00004 (a short call on the cheapest model) must not vanish into rounding;
    LiteLLM reports costs as floats, which must not skew it either."""
    for cost in (Decimal("0.00004"), 4e-05, 0.00004123, Decimal("0.0000399")):
        units = usd_to_units(cost, usd_per_credit=ONE, markup=ONE)
        exact = Decimal(str(cost)) * UNITS_PER_CREDIT
        assert abs(Decimal(units) - exact) <= exact / 100
        assert units > 0
    assert usd_to_units(4e-05, usd_per_credit=ONE, markup=ONE) == 40_000
