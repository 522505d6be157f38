"""A token's spending limit, and what the token has used in the limit's period.

A token may have a limit in credit units and a reset: `daily`, `weekly` (weeks start on
Monday), `monthly`, or none (the limit then counts everything the token ever spent);
periods start at midnight UTC. "Used" is what calls settled in the current period plus
what calls in flight hold.

How it is kept, so the check costs no extra round trip: counters on the token's row,
moved by the statements that already hold and settle the call's credits (composed by
`portal.credits.reservations`, `portal.credits.ledger.usage_debit` and
`portal.usage.settlement` from the pieces here):

- `held_units`: the holds of the token's calls in flight. The hold adds to it in the
  same statement as the balance's hold, and only when `used + hold <= limit` (both
  conditions or neither); the settlement (or the release of an expired hold) takes it off.
- `spent_day`, `spent_week`, `spent_month`, `spent_total`: settled debits in the day,
  week and month of `spent_at` (the last settlement) and since the token was made. A
  counter whose period began after `spent_at` reads as 0: a period rolls over without a
  write, and a limit or reset changed later is checked against exactly what was spent in
  the new period.

Every statement locks the user's credit account before the token's row (the credit row
is what serialises a user's holds and settlements; the token's row after it), so holds
and settlements never deadlock. A limit changed in the portal takes effect at the next
hold: the statement reads it from the row, nothing caches it.

Time: `clock` (UTC now) decides the period; a test's gateway process replaces it to
roll a period over without waiting (`tests/fixtures/clocked_gateway.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    Update,
    bindparam,
    case,
    or_,
    select,
    update,
)

from portal.db.base import UTCDateTime, utcnow
from portal.db.driver import CoreDriver, Driver, DriverStatement
from portal.db.engine import Executor
from portal.tokens.models import GatewayToken

__all__ = [
    "Reset",
    "SpendingLimit",
    "TokenSpending",
    "clock",
    "hold_on_token",
    "next_reset",
    "parse_limit",
    "period_parameters",
    "settle_on_driver",
    "settled_on_token",
    "spending_of",
    "unhold",
    "unhold_statement",
    "within_limit",
]


class Reset(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"  # from Monday
    MONTHLY = "monthly"


RESET_CHOICES = ("daily", "weekly", "monthly", "none")
"""What people may pick (`none`: the limit never resets)."""


@dataclass(frozen=True)
class SpendingLimit:
    units: int
    reset: Reset | None

    def __post_init__(self) -> None:
        if not isinstance(self.units, int) or self.units <= 0:
            raise ValueError("a spending limit must be more than 0 credits")


def parse_reset(text: str | None) -> Reset | None:
    """`daily`, `weekly`, `monthly`; `none` or empty is None; anything else ValueError."""
    value = (text or "").strip().lower()
    if value in ("", "none", "never"):
        return None
    try:
        return Reset(value)
    except ValueError:
        raise ValueError("reset must be daily, weekly, monthly or none") from None


def parse_limit(units: int | None, reset: str | None) -> SpendingLimit | None:
    """A limit of `units` with `reset`; None (no limit) when `units` is None. A reset
    without a limit is refused: it would limit nothing."""
    period = parse_reset(reset)
    if units is None:
        if period is not None:
            raise ValueError("a reset needs a limit: give the limit in credits too")
        return None
    return SpendingLimit(units, period)


def clock() -> datetime:
    """UTC now, for periods. Called through the module (never imported by name), so a
    test's gateway process can replace it."""
    return utcnow()


def period_start(reset: Reset | str | None, now: datetime) -> datetime | None:
    """When the period of `reset` that holds `now` began (None: never resets)."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if reset == Reset.DAILY:
        return day
    if reset == Reset.WEEKLY:
        return day - timedelta(days=day.weekday())
    if reset == Reset.MONTHLY:
        return day.replace(day=1)
    return None


def next_reset(reset: Reset | str | None, now: datetime) -> datetime | None:
    """When the period of `reset` that holds `now` ends (None: never)."""
    start = period_start(reset, now)
    if start is None:
        return None
    if reset == Reset.DAILY:
        return start + timedelta(days=1)
    if reset == Reset.WEEKLY:
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def period_parameters(now: datetime | None = None) -> dict[str, datetime]:
    """The bind parameters of the statements here: now and the starts of its day, week
    and month (UTC)."""
    now = now or clock()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "period_now": now,
        "period_day": day,
        "period_week": day - timedelta(days=day.weekday()),
        "period_month": day.replace(day=1),
    }


# Built once, on the table: these run inside every gateway call's statements.
_tokens = GatewayToken.__table__.c
_UNITS = bindparam("units", type_=BigInteger())
_TOKEN = bindparam("token", type_=String())
_HOLDER = bindparam("holder", type_=String())
_RELEASED = bindparam("released", type_=BigInteger())


def _since(start: str, counter: ColumnElement[int]) -> ColumnElement[int]:
    """`counter` if the last settlement fell in the period beginning at `start`, else 0."""
    return case((_tokens.spent_at >= bindparam(start, type_=UTCDateTime()), counter), else_=0)


_SPENT_DAY = _since("period_day", _tokens.spent_day)
_SPENT_WEEK = _since("period_week", _tokens.spent_week)
_SPENT_MONTH = _since("period_month", _tokens.spent_month)
_SPENT_IN_PERIOD = case(
    (_tokens.limit_reset == Reset.DAILY.value, _SPENT_DAY),
    (_tokens.limit_reset == Reset.WEEKLY.value, _SPENT_WEEK),
    (_tokens.limit_reset == Reset.MONTHLY.value, _SPENT_MONTH),
    else_=_tokens.spent_total,
)


def within_limit() -> ColumnElement[bool]:
    """The token's row allows a hold of `units` more: no limit, or settled in the period
    plus held plus `units` within it."""
    return or_(
        _tokens.limit_units.is_(None),
        _SPENT_IN_PERIOD + _tokens.held_units + _UNITS <= _tokens.limit_units,
    )


def hold_on_token(balance_covers: ColumnElement[bool]) -> Update:
    """The token's side of a hold: `held_units` up by `units` for token `token` of user
    `holder` when `within_limit` and `balance_covers` (the credit side's condition,
    evaluated by the caller on the user's locked credit row); returns the token's id."""
    return (
        update(GatewayToken.__table__)
        .where(_tokens.id == _TOKEN, _tokens.user_id == _HOLDER, balance_covers, within_limit())
        .values(held_units=_tokens.held_units + _UNITS)
        .returning(_tokens.id)
    )


def _held_minus(released: ColumnElement[int]) -> ColumnElement[int]:
    return case((_tokens.held_units > released, _tokens.held_units - released), else_=0)


def settled_on_token(debit: ColumnElement[int], released: ColumnElement[int]) -> Update:
    """The token's side of a settlement: `debit` units added to the counters of the
    current periods (`period_*` parameters), `released` taken off what it holds. For
    token `token`; the caller adds its conditions."""
    return (
        update(GatewayToken.__table__)
        .where(_tokens.id == _TOKEN)
        .values(
            spent_day=_SPENT_DAY + debit,
            spent_week=_SPENT_WEEK + debit,
            spent_month=_SPENT_MONTH + debit,
            spent_total=_tokens.spent_total + debit,
            spent_at=bindparam("period_now", type_=UTCDateTime()),
            held_units=_held_minus(released),
        )
        .returning(_tokens.id)
    )


def unhold_statement(released: ColumnElement[int], token: ColumnElement[str]) -> Update:
    """A hold of `released` units dropped without a settlement (released or expired)."""
    return (
        update(GatewayToken.__table__)
        .where(_tokens.id == token)
        .values(held_units=_held_minus(released))
        .returning(_tokens.id)
    )


_SETTLED_ON_TOKEN = DriverStatement(
    settled_on_token(bindparam("debit", type_=BigInteger()), _RELEASED), "sqlite"
)
_UNHOLD = unhold_statement(_RELEASED, _TOKEN)


async def settle_on_driver(
    driver: Driver | CoreDriver, *, token_id: str, debit: int, released: int
) -> None:
    """SQLite (and the portal's upgrade of a failed call), in the caller's transaction:
    the token's side of a settlement (`settled_on_token`) as its own statement."""
    if debit or released:
        parameters: dict[str, Any] = {"token": token_id, "debit": debit, "released": released}
        await driver.fetch(_SETTLED_ON_TOKEN, parameters | period_parameters())


async def unhold(session: Executor, *, token_id: str, released: int) -> None:
    """Take `released` units off what token `token_id` holds, for a hold dropped without
    a settlement."""
    await session.execute(_UNHOLD, {"token": token_id, "released": released})


@dataclass(frozen=True)
class TokenSpending:
    """A token's limit and what it used, as of `now`."""

    limit_units: int | None
    reset: Reset | None
    used_units: int
    """Settled in the current period plus held by calls in flight."""
    resets_at: datetime | None
    """When the current period ends (None: no limit, or it never resets)."""

    @property
    def remaining_units(self) -> int | None:
        if self.limit_units is None:
            return None
        return max(self.limit_units - self.used_units, 0)

    def allows(self, units: int) -> bool:
        return self.limit_units is None or self.used_units + units <= self.limit_units


_COLUMNS = (
    _tokens.limit_units,
    _tokens.limit_reset,
    _tokens.held_units,
    _tokens.spent_day,
    _tokens.spent_week,
    _tokens.spent_month,
    _tokens.spent_total,
    _tokens.spent_at,
)


def spending_from(row: Any, now: datetime | None = None) -> TokenSpending:
    """A `TokenSpending` from a row with `_COLUMNS` (a GatewayToken, or a result row)."""
    now = now or clock()
    period = period_parameters(now)
    reset = parse_reset(row.limit_reset)
    spent_at = row.spent_at

    def since(start: str, counter: int) -> int:
        return counter if spent_at is not None and spent_at >= period[start] else 0

    settled = {
        Reset.DAILY: since("period_day", row.spent_day),
        Reset.WEEKLY: since("period_week", row.spent_week),
        Reset.MONTHLY: since("period_month", row.spent_month),
        None: row.spent_total,
    }[reset]
    limit = row.limit_units
    return TokenSpending(
        limit_units=limit,
        reset=reset,
        used_units=int(settled) + int(row.held_units or 0),
        resets_at=next_reset(reset, now) if limit is not None else None,
    )


async def spending_of(
    session: Executor, token_id: str, now: datetime | None = None
) -> TokenSpending | None:
    """Token `token_id`'s limit and use (None: no such token)."""
    row = (await session.execute(select(*_COLUMNS).where(_tokens.id == token_id))).first()
    return None if row is None else spending_from(row, now)
