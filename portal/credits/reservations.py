"""Credits held for calls in flight, so concurrent calls cannot overspend.

`reserve` is one conditional UPDATE (`balance - reserved >= amount`), atomic on
PostgreSQL and SQLite alike and therefore across gateway workers and instances: a
user's balance can go below zero only by how much one call's estimate fell short.

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
    select,
    update,
)

from portal.credits.models import CreditAccount, Reservation
from portal.db.base import UTCDateTime, utcnow
from portal.db.driver import CoreDriver, Driver, DriverStatement
from portal.db.engine import Executor, dialect_name
from portal.db.upsert import WITHOUT_SESSION_SYNC, affected_rows
from portal.errors import InsufficientCredits

__all__ = [
    "HoldRelease",
    "hold_on_driver",
    "hold_release",
    "release",
    "release_at_once",
    "release_expired",
    "release_on_driver",
    "reserve",
    "reserved_minus",
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
# The same on the gateway's SQLite (no writable CTEs): two statements in its transaction.
_HOLD_ON_SQLITE = _HOLD.values(updated_at=bindparam("now", type_=UTCDateTime())).returning(
    _accounts.user_id
)
_ADD_HOLD_ON_SQLITE = insert(Reservation.__table__).values(
    call_id=bindparam("call_id", type_=String()),
    user_id=bindparam("holder", type_=String()),
    amount=bindparam("units", type_=BigInteger()),
    created_at=bindparam("now", type_=UTCDateTime()),
    expires_at=bindparam("expires", type_=UTCDateTime()),
)
_HOLD_BY_DRIVER = {
    "postgresql": (DriverStatement(_HOLD_AT_ONCE, "postgresql"),),
    "sqlite": (
        DriverStatement(_HOLD_ON_SQLITE, "sqlite"),
        DriverStatement(_ADD_HOLD_ON_SQLITE, "sqlite"),
    ),
}
_DROP_HOLD_BY_DRIVER = DriverStatement(_DROP_HOLD, "sqlite")
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
    return HoldRelease(dropped, reserved_minus(released), exists(select(dropped.c.amount)))


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


async def hold_on_driver(
    driver: Driver | CoreDriver, *, user_id: str, call_id: str, amount: int, ttl_seconds: int
) -> bool:
    """The gateway's hold, sent by the driver (`portal.db.driver`): on PostgreSQL one
    statement in autocommit (`Database.driver`), on SQLite two in the caller's transaction
    (`Database.driver_transaction`). False when the balance does not cover it (nothing
    held): then `reserve`, which frees expired holds first, decides."""
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
    first, *rest = _HOLD_BY_DRIVER[driver.dialect]
    if not await driver.fetch(first, parameters):
        return False
    for statement in rest:
        await driver.fetch(statement, parameters)
    return True


async def release_on_driver(driver: Driver | CoreDriver, call_id: str) -> int:
    """SQLite, in the caller's driver transaction: drop the hold of `call_id`; the units it
    held (0 if none), for the caller to take off `reserved` with `reserved_minus` (the
    settlement does that in its one UPDATE of the account)."""
    dropped = await driver.fetch(_DROP_HOLD_BY_DRIVER, {"held_for": call_id})
    return sum(amount for _, amount in dropped)


def reserved_minus(released: ColumnElement[int]) -> ColumnElement[int]:
    """The account's `reserved` less `released`, never below 0: a hold the account did not
    count (a hand-edited row) must not fail the settlement it is part of (the CHECK
    constraint would)."""
    return case((_accounts.reserved > released, _accounts.reserved - released), else_=0)


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
