"""Credits held for calls in flight, so concurrent calls cannot overspend.

`reserve` is one conditional UPDATE (`balance - reserved >= amount`), atomic on
PostgreSQL and SQLite alike and therefore across gateway workers and instances: a
user's balance can go below zero only by how much one call's estimate fell short.

On PostgreSQL the gateway's hold is one statement (writable CTEs): `hold_at_once` (the
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
    delete,
    exists,
    func,
    insert,
    select,
    update,
)

from portal.credits.models import CreditAccount, Reservation
from portal.db.base import UTCDateTime, utcnow
from portal.db.driver import DriverConnection, DriverStatement
from portal.db.engine import Executor, dialect_name
from portal.db.upsert import WITHOUT_SESSION_SYNC, affected_rows
from portal.errors import InsufficientCredits

__all__ = [
    "HoldRelease",
    "hold_at_once",
    "hold_release",
    "release",
    "release_at_once",
    "release_expired",
    "reserve",
]

# Built once and run with bind parameters, on the tables rather than the ORM classes: these
# run on every gateway call, and building them per call (plus the ORM's DML handling) cost
# more CPU than the round trips themselves.
_accounts = CreditAccount.__table__.c
_holds = Reservation.__table__.c
_HOLD = (
    update(CreditAccount.__table__)
    .where(
        _accounts.user_id == bindparam("holder"),
        _accounts.balance - _accounts.reserved >= bindparam("units"),
    )
    .values(reserved=_accounts.reserved + bindparam("units"))
)
_UNHOLD = (
    update(CreditAccount.__table__)
    .where(_accounts.user_id == bindparam("holder"))
    .values(reserved=_accounts.reserved - bindparam("units"))
)
_ADD_HOLD = insert(Reservation.__table__)
_DROP_HOLD = (
    delete(Reservation.__table__)
    .where(_holds.call_id == bindparam("held_for"))
    .returning(_holds.user_id, _holds.amount)
)
# PostgreSQL: the conditional UPDATE and the hold row as one statement; a row comes back
# only when the balance covered the hold (then both happened, atomically).
_held = (
    _HOLD.values(updated_at=bindparam("now", type_=UTCDateTime()))
    .returning(_accounts.user_id)
    .cte("held")
)
_HOLD_AT_ONCE = (
    insert(Reservation.__table__)
    .from_select(
        ["call_id", "user_id", "amount", "created_at", "expires_at"],
        select(
            bindparam("call_id", type_=String()),
            _held.c.user_id,
            bindparam("units", type_=BigInteger()),
            bindparam("now", type_=UTCDateTime()),
            bindparam("expires", type_=UTCDateTime()),
        ),
    )
    .returning(_holds.id)
)
_HOLD_ON_DRIVER = DriverStatement(_HOLD_AT_ONCE)
# PostgreSQL: the hold's DELETE and the UPDATE of `reserved` as one statement. The DELETE
# locks the hold row, so two settlements of one call release it once.
_dropped = _DROP_HOLD.cte("dropped")
_RELEASE_AT_ONCE = (
    update(CreditAccount.__table__)
    .where(_accounts.user_id == _dropped.c.user_id)
    .values(
        reserved=_accounts.reserved - _dropped.c.amount,
        updated_at=bindparam("now", type_=UTCDateTime()),  # column defaults skip CTE-joined updates
    )
    .returning(_dropped.c.amount)
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


def hold_release() -> HoldRelease:
    dropped = _DROP_HOLD.cte("dropped_hold")
    released = func.coalesce(select(func.sum(dropped.c.amount)).scalar_subquery(), 0)
    # Never below 0: a hold the account did not count (a hand-edited row) must not fail
    # the settlement it is part of (the CHECK constraint would).
    reserved = func.greatest(_accounts.reserved - released, 0)
    return HoldRelease(dropped, reserved, exists(select(dropped.c.amount)))


async def reserve(
    session: Executor, *, user_id: str, call_id: str, amount: int, ttl_seconds: int
) -> None:
    """Hold `amount` units for `call_id` or raise InsufficientCredits."""
    if amount <= 0:
        raise ValueError("a reservation must be positive")
    # A crashed worker may have left holds behind; on refusal free those and retry once.
    held = await _try_hold(session, user_id, amount) or (
        await release_expired(session, user_id) > 0 and await _try_hold(session, user_id, amount)
    )
    if not held:
        raise InsufficientCredits(
            "Insufficient credits: your balance does not cover this request. "
            "Top up your credits in the portal, or lower max_tokens."
        )
    now = utcnow()
    await session.execute(
        _ADD_HOLD,
        {
            "call_id": call_id,
            "user_id": user_id,
            "amount": amount,
            "created_at": now,
            "expires_at": now + timedelta(seconds=ttl_seconds),
        },
    )


async def hold_at_once(
    connection: DriverConnection, *, user_id: str, call_id: str, amount: int, ttl_seconds: int
) -> bool:
    """PostgreSQL: hold `amount` for `call_id` in one statement, on the driver's connection
    in autocommit (the statement is its own transaction; `Database.driver`). False when the
    balance does not cover it: then `reserve` (which frees expired holds first) decides."""
    if amount <= 0:
        raise ValueError("a reservation must be positive")
    now = utcnow()
    parameters = {
        "holder": user_id,
        "units": amount,
        "call_id": call_id,
        "now": now,
        "expires": now + timedelta(seconds=ttl_seconds),
    }
    return bool(await _HOLD_ON_DRIVER.fetch(connection, parameters))


async def _try_hold(session: Executor, user_id: str, amount: int) -> bool:
    result = await session.execute(_HOLD, {"holder": user_id, "units": amount})
    return bool(affected_rows(result))


async def release(session: Executor, call_id: str) -> int:
    """Drop the hold of `call_id`; returns the units released (0 if none was held)."""
    if dialect_name(session) == "postgresql":
        return await release_at_once(session, call_id)
    rows = (await session.execute(_DROP_HOLD, {"held_for": call_id})).all()
    for user_id, amount in rows:
        await _unhold(session, user_id, amount)
    return sum(amount for _, amount in rows)


async def release_at_once(connection: Executor, call_id: str) -> int:
    """PostgreSQL: `release` as one statement (the caller's transaction, or autocommit)."""
    parameters = {"held_for": call_id, "now": utcnow()}
    released = (await connection.execute(_RELEASE_AT_ONCE, parameters)).all()
    return sum(amount for (amount,) in released)


async def release_expired(session: Executor, user_id: str | None = None) -> int:
    """Drop holds past their expiry (one user's, or everyone's); returns units released."""
    statement = delete(Reservation).where(Reservation.expires_at < utcnow())
    if user_id is not None:
        statement = statement.where(Reservation.user_id == user_id)
    rows = (
        await session.execute(
            statement.returning(Reservation.user_id, Reservation.amount),
            execution_options=WITHOUT_SESSION_SYNC,
        )
    ).all()
    for held_by, amount in rows:
        await _unhold(session, held_by, amount)
    return sum(amount for _, amount in rows)


async def _unhold(session: Executor, user_id: str, amount: int) -> None:
    await session.execute(_UNHOLD, {"holder": user_id, "units": amount})
