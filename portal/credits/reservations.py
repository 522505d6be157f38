"""Credits held for calls in flight, so concurrent calls cannot overspend.

`reserve` is one conditional UPDATE (`balance - reserved >= amount`), atomic on
PostgreSQL and SQLite alike and therefore across gateway workers and instances: a
user's balance can go below zero only by how much one call's estimate fell short.

A hold taken for a token also counts on the token's row, in the same statement (the
token's spending limit: `portal.tokens.spending`): both the balance and the token's
limit allow it, or nothing is held. On PostgreSQL the statement first locks the user's
credit row (SELECT … FOR UPDATE, in a CTE), then updates the token's row on condition of
both, then the credit row on condition of the token's update: every statement that
touches both rows locks the credit row first, so none deadlock. A refusal says which of
the two refused (`TokenLimitReached` or `InsufficientCredits`).

On PostgreSQL the gateway's hold is one statement (writable CTEs): `hold_on_driver` (the
conditional UPDATE and the hold row, sent by the driver outside a transaction: one round
trip instead of BEGIN, two statements and COMMIT); its release is part of the
settlement's statement (`hold_release`, composed by `portal.usage.settlement`), and
`release` is one statement too (the hold's DELETE and the UPDATE of `reserved`). SQLite
has no writable CTEs: it runs the same steps as separate statements in the caller's
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    String,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from portal.credits.models import CreditAccount, Reservation
from portal.credits.units import format_units
from portal.db.base import UTCDateTime, utcnow
from portal.db.driver import CoreDriver, Driver, DriverStatement
from portal.db.engine import Executor, dialect_name
from portal.db.upsert import WITHOUT_SESSION_SYNC
from portal.errors import InsufficientCredits, TokenLimitReached
from portal.tokens import spending

__all__ = [
    "HoldRelease",
    "hold_on_driver",
    "hold_release",
    "refusal",
    "release",
    "release_at_once",
    "release_expired",
    "release_on_driver",
    "reserve",
    "reserved_minus",
    "token_limit_reached",
]

# Built once and run with bind parameters, on the tables rather than the ORM classes: these
# run on every gateway call, and building them per call (plus the ORM's DML handling) cost
# more CPU than the round trips themselves.
_accounts = CreditAccount.__table__.c
_holds = Reservation.__table__.c
_UNITS = bindparam("units", type_=BigInteger())
_TOKEN = bindparam("token", type_=String())
_NOW = bindparam("now", type_=UTCDateTime())
_HOLD = (
    update(CreditAccount.__table__)
    .where(
        _accounts.user_id == bindparam("holder"),
        _accounts.balance - _accounts.reserved >= _UNITS,
    )
    .values(reserved=_accounts.reserved + _UNITS, updated_at=_NOW)
    .returning(_accounts.user_id)
)
_UNHOLD = (
    update(CreditAccount.__table__)
    .where(_accounts.user_id == bindparam("holder"))
    .values(reserved=_accounts.reserved - bindparam("units"))
)
_DROP_HOLD = (
    delete(Reservation.__table__)
    .where(_holds.call_id == bindparam("held_for"))
    .returning(_holds.user_id, _holds.amount, _holds.token_id)
)
_HOLD_COLUMNS = ["call_id", "user_id", "token_id", "amount", "created_at", "expires_at"]
# PostgreSQL, one statement: lock the user's credit row and read what it leaves free;
# count the hold on the token if its limit and that balance allow it; then hold on the
# credit row if the token's update happened (or no token was given). A row comes back only
# when all of it happened.
_free = (
    select((_accounts.balance - _accounts.reserved).label("free"))
    .where(_accounts.user_id == bindparam("holder"))
    .with_for_update()
    .cte("free")
)
_on_token = spending.hold_on_token(select(_free.c.free).scalar_subquery() >= _UNITS).cte(
    "token_held"
)
_held = _HOLD.where(or_(exists(select(_on_token.c.id)), _TOKEN.is_(None))).cte("held")
_HOLD_AT_ONCE = (
    insert(Reservation.__table__)
    .from_select(
        _HOLD_COLUMNS,
        select(
            bindparam("call_id", type_=String()),
            _held.c.user_id,
            _TOKEN,
            _UNITS,
            _NOW,
            bindparam("expires", type_=UTCDateTime()),
        ),
    )
    .returning(_holds.id)
)
# The same on SQLite (no writable CTEs), in the caller's transaction (which holds the
# database's write lock from its first write): the token's side on condition of both,
# then the credit row's, then the hold row.
_HOLD_ON_TOKEN_ON_SQLITE = DriverStatement(
    spending.hold_on_token(
        select(_accounts.balance - _accounts.reserved)
        .where(_accounts.user_id == bindparam("holder"))
        .scalar_subquery()
        >= _UNITS
    ),
    "sqlite",
)
_HOLD_ON_SQLITE = DriverStatement(_HOLD, "sqlite")
_ADD_HOLD_ON_SQLITE = DriverStatement(
    insert(Reservation.__table__).values(
        call_id=bindparam("call_id", type_=String()),
        user_id=bindparam("holder", type_=String()),
        token_id=_TOKEN,
        amount=_UNITS,
        created_at=_NOW,
        expires_at=bindparam("expires", type_=UTCDateTime()),
    ),
    "sqlite",
)
_HOLD_AT_ONCE_BY_DRIVER = DriverStatement(_HOLD_AT_ONCE, "postgresql")
_DROP_HOLD_BY_DRIVER = DriverStatement(_DROP_HOLD, "sqlite")
# PostgreSQL: the hold's DELETE, the UPDATE of `reserved` and the token's `held_units` as
# one statement (credit row before token row, as everywhere). The DELETE locks the hold
# row, so two settlements of one call release it once.
_dropped = _DROP_HOLD.cte("dropped")
_released = (
    update(CreditAccount.__table__)
    .where(_accounts.user_id == _dropped.c.user_id)
    .values(
        reserved=_accounts.reserved - _dropped.c.amount,
        updated_at=_NOW,  # column defaults skip CTE-joined updates
    )
    .returning(_dropped.c.amount, _dropped.c.token_id)
    .cte("released")
)
_released_on_token = spending.unhold_statement(_released.c.amount, _released.c.token_id).cte(
    "released_on_token"
)
_RELEASE_AT_ONCE = select(
    _released.c.amount, select(func.count()).select_from(_released_on_token).scalar_subquery()
)


@dataclass(frozen=True)
class HoldRelease:
    """PostgreSQL: the release of a call's hold (bind parameter `held_for`) inside a
    statement that also moves the balance (the settlement, `ledger.usage_debit`), which
    updates the account's row once with both."""

    dropped: CTE
    """Deletes the hold; its DELETE locks the row, so two settlements release it once."""
    reserved: ColumnElement[int]
    """The account's `reserved` after the release (not below 0)."""
    happened: ColumnElement[bool]
    """True when there was a hold to release."""
    on_token: ColumnElement[int]
    """The units of the hold that token `token` counted (`portal.tokens.spending`)."""


def hold_release() -> HoldRelease:
    dropped = _DROP_HOLD.cte("dropped_hold")
    released = func.coalesce(select(func.sum(dropped.c.amount)).scalar_subquery(), 0)
    on_token = func.coalesce(
        select(func.sum(dropped.c.amount)).where(dropped.c.token_id == _TOKEN).scalar_subquery(),
        0,
    )
    return HoldRelease(
        dropped, reserved_minus(released), exists(select(dropped.c.amount)), on_token
    )


async def reserve(
    session: Executor,
    *,
    user_id: str,
    call_id: str,
    amount: int,
    ttl_seconds: int,
    token_id: str | None = None,
) -> None:
    """Hold `amount` units for `call_id` (counted on token `token_id`'s limit, if given),
    or raise TokenLimitReached or InsufficientCredits."""
    if amount <= 0:
        raise ValueError("a reservation must be positive")
    driver = CoreDriver(session)

    async def hold() -> bool:
        return await hold_on_driver(
            driver,
            user_id=user_id,
            call_id=call_id,
            amount=amount,
            ttl_seconds=ttl_seconds,
            token_id=token_id,
        )

    # A crashed worker may have left holds behind; on refusal free those and retry once.
    held = await hold() or (await release_expired(session, user_id) > 0 and await hold())
    if not held:
        raise await refusal(session, token_id=token_id, amount=amount)


async def refusal(session: Executor, *, token_id: str | None, amount: int) -> InsufficientCredits:
    """Why a hold of `amount` was refused: the token's limit (with its figures) when it
    does not allow it, else the balance."""
    if token_id is not None:
        used = await spending.spending_of(session, token_id)
        if used is not None and not used.allows(amount):
            return token_limit_reached(used)
    return InsufficientCredits(
        "Insufficient credits: your balance does not cover this request. "
        "Top up your credits in the portal, or lower max_tokens."
    )


def token_limit_reached(used: spending.TokenSpending) -> TokenLimitReached:
    """The 402 of a token past its limit: the limit, what is used and when it resets."""
    limit = used.limit_units or 0
    resets = used.resets_at
    when = (
        f"It resets at {resets:%Y-%m-%d %H:%M} UTC."
        if resets is not None
        else "It does not reset: raise it in the portal under Tokens."
    )
    return TokenLimitReached(
        f"This token has reached its spending limit: {format_units(used.used_units)} of "
        f"{format_units(limit)} credits used"
        + (f" this {_PERIOD_NAMES[used.reset]}" if used.reset is not None else "")
        + f". {when} Lower max_tokens, or change the token's limit in the portal.",
        limit_units=limit,
        used_units=used.used_units,
        resets_at=resets,
    )


_PERIOD_NAMES = {
    spending.Reset.DAILY: "day",
    spending.Reset.WEEKLY: "week",
    spending.Reset.MONTHLY: "month",
}


async def hold_on_driver(
    driver: Driver | CoreDriver,
    *,
    user_id: str,
    call_id: str,
    amount: int,
    ttl_seconds: int,
    token_id: str | None = None,
) -> bool:
    """The gateway's hold, sent by the driver (`portal.db.driver`): on PostgreSQL one
    statement in autocommit (`Database.driver`), on SQLite two or three in the caller's
    transaction (`Database.driver_transaction`). Counted on token `token_id`'s limit if
    given. False when the balance or the token's limit does not allow it (nothing held):
    then `reserve`, which frees expired holds first, decides."""
    if amount <= 0:
        raise ValueError("a reservation must be positive")
    now = utcnow()
    parameters = {
        "holder": user_id,
        "units": amount,
        "call_id": call_id,
        "token": token_id,
        "now": now,
        "expires": now + timedelta(seconds=ttl_seconds),
        **spending.period_parameters(),
    }
    if driver.dialect == "postgresql":
        return bool(await driver.fetch(_HOLD_AT_ONCE_BY_DRIVER, parameters))
    if token_id is not None and not await driver.fetch(_HOLD_ON_TOKEN_ON_SQLITE, parameters):
        return False
    if not await driver.fetch(_HOLD_ON_SQLITE, parameters):
        if token_id is not None:  # the token's update saw the same balance: cannot happen
            raise RuntimeError("the balance changed inside the hold's transaction")
        return False
    await driver.fetch(_ADD_HOLD_ON_SQLITE, parameters)
    return True


async def release_on_driver(driver: Driver | CoreDriver, call_id: str) -> tuple[int, int]:
    """SQLite, in the caller's driver transaction: drop the hold of `call_id`. The units
    it held (0 if none), for the caller to take off `reserved` with `reserved_minus` (the
    settlement does that in its one UPDATE of the account), and of those the units a
    token counted (for `spending.settle_on_driver`)."""
    dropped = await driver.fetch(_DROP_HOLD_BY_DRIVER, {"held_for": call_id})
    total = sum(amount for _, amount, _ in dropped)
    return total, sum(amount for _, amount, token in dropped if token is not None)


def reserved_minus(released: ColumnElement[int]) -> ColumnElement[int]:
    """The account's `reserved` less `released`, never below 0: a hold the account did not
    count (a hand-edited row) must not fail the settlement it is part of (the CHECK
    constraint would)."""
    return case((_accounts.reserved > released, _accounts.reserved - released), else_=0)


async def release(session: Executor, call_id: str) -> int:
    """Drop the hold of `call_id`; returns the units released (0 if none was held)."""
    if dialect_name(session) == "postgresql":
        return await release_at_once(session, call_id)
    rows = (await session.execute(_DROP_HOLD, {"held_for": call_id})).all()
    for user_id, amount, token_id in rows:
        await _unhold(session, user_id, amount, token_id)
    return sum(amount for _, amount, _ in rows)


async def release_at_once(connection: Executor, call_id: str) -> int:
    """PostgreSQL: `release` as one statement (the caller's transaction, or autocommit)."""
    parameters = {"held_for": call_id, "now": utcnow()}
    released = (await connection.execute(_RELEASE_AT_ONCE, parameters)).all()
    return sum(amount for amount, _ in released)


async def release_expired(session: Executor, user_id: str | None = None) -> int:
    """Drop holds past their expiry (one user's, or everyone's); returns units released."""
    statement = delete(Reservation).where(Reservation.expires_at < utcnow())
    if user_id is not None:
        statement = statement.where(Reservation.user_id == user_id)
    rows = (
        await session.execute(
            statement.returning(Reservation.user_id, Reservation.amount, Reservation.token_id),
            execution_options=WITHOUT_SESSION_SYNC,
        )
    ).all()
    for held_by, amount, token_id in rows:
        await _unhold(session, held_by, amount, token_id)
    return sum(amount for _, amount, _ in rows)


async def _unhold(session: Executor, user_id: str, amount: int, token_id: str | None) -> None:
    """The credit row first, then the token's (the order every statement keeps)."""
    await session.execute(_UNHOLD, {"holder": user_id, "units": amount})
    if token_id is not None:
        await spending.unhold(session, token_id=token_id, released=amount)
