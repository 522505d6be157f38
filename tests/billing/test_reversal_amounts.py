"""How much of a purchase a refund or dispute takes back: the reversed share, rounded half
up, never more than was granted."""

from __future__ import annotations

import pytest

from portal.billing.reads import Purchase, Reversal
from portal.credits.models import EntryKind

PACK = Purchase("cs_test_1", EntryKind.PURCHASE, 10 * 10**9, True, "pack")


@pytest.mark.parametrize(
    ("charged", "reversed_amount", "granted", "taken"),
    [
        (1000, 0, 10 * 10**9, 0),
        (1000, 250, 10 * 10**9, 2_500_000_000),
        (1000, 1000, 10 * 10**9, 10 * 10**9),
        (1000, 5000, 10 * 10**9, 10 * 10**9),  # never more than granted
        (3, 1, 10, 3),  # 3.33 -> 3
        (3, 2, 10, 7),  # 6.67 -> 7
        (2, 1, 5, 3),  # 2.5 -> 3 (half up)
        (0, 1, 7, 7),  # a free purchase reversed: all of it
        (1000, 500, 0, 0),  # nothing granted, nothing to take
    ],
)
def test_units_to_claw_back(charged: int, reversed_amount: int, granted: int, taken: int) -> None:
    assert Reversal(PACK, charged, reversed_amount).units_to_claw_back(granted) == taken
