"""Where credits are granted and debited. The only writer of `ledger_entries` and of
`credit_accounts.balance` (reservations own `credit_accounts.reserved`); callers own the
transaction. Other modules read the ledger through the functions here too.

Every entry is keyed by its cause (`cause_type`, `cause_id`): posting the same cause
twice writes nothing the second time, so retries and duplicate deliveries are safe.

Append-only for money: an entry is never deleted and its amount, kind and time never
change. Only what links an entry to a person is ever changed, for privacy: `clear_notes`
(account deletion: an operator's note could name the person), `unlink_usage` (retention
anonymised the usage record) and `unlink_from_people` (retention, past the legal window,
with `carry_forward` keeping the user's entries summing to the balance). The schema
itself sets `user_id` to NULL when an account is deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Select,
    String,
    bindparam,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from portal.credits import alerts
from portal.credits.models import CauseType, CreditAccount, EntryKind, LedgerEntry
from portal.credits.reservations import HoldRelease, reserved_minus
from portal.db.base import UTCDateTime, utcnow
from portal.db.driver import CoreDriver, Driver, DriverStatement
from portal.db.engine import Executor, dialect_name
from portal.db.upsert import affected_rows, insert_ignore
from portal.tokens import spending

__all__ = [
    "Posted",
    "available",
    "balance",
    "balance_and_reserved",
    "balances_below",
    "carry_forward",
    "clear_notes",
    "ensure_account",
    "entry_for_cause",
    "last_top_up",
    "ledger_sum",
    "list_entries",
    "post_entry",
    "spent_after",
    "sum_for_causes",
    "unlink_from_people",
    "unlink_usage",
    "usage_debit",
    "usage_debit_on_driver",
]


# Built once (it runs on every gateway call), on the table: see `reservations`.
_accounts = CreditAccount.__table__.c
_MOVE_BALANCE = (
    update(CreditAccount.__table__)
    .where(_accounts.user_id == bindparam("holder"))
    .values(balance=_accounts.balance + bindparam("units"))
)
# PostgreSQL: an entry and its balance move as one statement (writable CTEs): the entry
# unless its cause was posted, then the move by it when the account row is there.
_ENTRY_COLUMNS = [
    "user_id", "amount", "kind", "cause_type", "cause_id", "note", "usage_record_id",
    "created_at",
]  # fmt: skip
_UNITS = bindparam("units", type_=BigInteger())
_HOLDER = bindparam("holder", type_=String())
_CAUSE_ID = bindparam("cause_id", type_=String())
_NOW = bindparam("now", type_=UTCDateTime())


def _entry(entry_values: Select[*tuple[Any, ...]], name: str) -> CTE:
    """The CTE that inserts the entry `entry_values` selects (in `_ENTRY_COLUMNS` order)
    unless its cause was posted; it returns the amount posted."""
    return (
        postgresql.insert(LedgerEntry.__table__)
        .from_select(_ENTRY_COLUMNS, entry_values)
        .on_conflict_do_nothing()
        .returning(LedgerEntry.__table__.c.amount)
        .cte(f"{name}_entry")
    )


def _entry_and_move(entry_values: Select[*tuple[Any, ...]], name: str) -> tuple[CTE, CTE]:
    """The CTEs that insert the entry `entry_values` selects and move the balance by it.
    Their row counts say what happened."""
    entry = _entry(entry_values, name)
    moved = (
        _MOVE_BALANCE.where(exists(select(entry.c.amount)))
        .values(updated_at=_NOW)  # column defaults do not reach into a CTE
        .returning(_accounts.user_id)
        .cte(f"{name}_moved")
    )
    return entry, moved


def _rows(cte: CTE) -> Any:
    return select(func.count()).select_from(cte).scalar_subquery()


_any_entry, _any_move = _entry_and_move(
    select(
        _HOLDER,
        _UNITS,
        bindparam("kind", type_=String()),
        bindparam("cause_type", type_=String()),
        _CAUSE_ID,
        bindparam("note", type_=String()),
        bindparam("usage_record_id", type_=BigInteger()),
        _NOW,
    ),
    "posted",
)
_POST_AT_ONCE = select(_rows(_any_entry), _rows(_any_move))


def usage_debit(record: CTE, release: HoldRelease) -> Select[tuple[int, int, int, int]]:
    """PostgreSQL: a statement that posts the debit of the usage record `record` inserts (a
    CTE returning its `id`, empty when it inserted nothing), moves the balance with it and
    releases the call's hold (`release`, built by `portal.credits.reservations`: the
    account's row is updated once, by both owners' columns, since a statement may not
    update a row twice), then counts the debit and the release on the call's token
    (`portal.tokens.spending`; after the account's row, the order every statement keeps).
    A debit that takes the balance below a threshold also writes a balance alert
    (`alerts.crossing_alert`). One row (record id, entries posted, accounts updated, tokens
    updated, alerts written), or none when `record` is empty (the hold is released all the
    same). Parameters: `holder` (user id), `units` (the debit, negative; 0 posts nothing),
    `cause_id` (the call id), `held_for` (the call id), `token` (the call's token id, or
    None), `low_balance_below`, `now` and `spending.period_parameters()`. Used by
    `portal.usage.settlement`, which owns the record; built once there."""
    entry = _entry(
        select(
            _HOLDER,
            _UNITS,
            literal(EntryKind.DEBIT, String()),
            literal(CauseType.USAGE, String()),
            _CAUSE_ID,
            null(),
            record.c.id,
            _NOW,
        ).where(_UNITS != 0),
        "usage",
    )
    posted = func.coalesce(select(func.sum(entry.c.amount)).scalar_subquery(), 0)
    moved = (
        update(CreditAccount.__table__)
        .where(_accounts.user_id == _HOLDER, or_(exists(select(entry.c.amount)), release.happened))
        .values(balance=_accounts.balance + posted, reserved=release.reserved, updated_at=_NOW)
        .returning(_accounts.user_id, _accounts.balance)
        .cte("usage_moved")
    )
    on_token = (
        spending.settled_on_token(-posted, release.on_token)
        .where(exists(select(moved.c.user_id)))
        .cte("usage_on_token")
    )
    alerted = alerts.crossing_alert(moved, posted)
    return select(record.c.id, _rows(entry), _rows(moved), _rows(on_token), _rows(alerted))


# SQLite (no writable CTEs), in the gateway's driver transaction: the debit entry, then
# one UPDATE of the account for the balance and the hold's release together.
_USAGE_ENTRY_ON_SQLITE = DriverStatement(
    sqlite.insert(LedgerEntry.__table__)
    .values(
        user_id=_HOLDER,
        amount=_UNITS,
        kind=literal(EntryKind.DEBIT, String()),
        cause_type=literal(CauseType.USAGE, String()),
        cause_id=_CAUSE_ID,
        note=null(),
        usage_record_id=bindparam("record_id", type_=BigInteger()),
        created_at=_NOW,
    )
    .on_conflict_do_nothing()
    .returning(LedgerEntry.__table__.c.amount),
    "sqlite",
)
_MOVE_AND_RELEASE_ON_SQLITE = DriverStatement(
    update(CreditAccount.__table__)
    .where(_accounts.user_id == _HOLDER)
    .values(
        balance=_accounts.balance + _UNITS,
        reserved=reserved_minus(bindparam("released", type_=BigInteger())),
        updated_at=_NOW,
    )
    .returning(*alerts.MOVE_RETURNING),
    "sqlite",
)


async def usage_debit_on_driver(
    driver: Driver | CoreDriver,
    *,
    user_id: str,
    amount: int,
    call_id: str,
    record_id: int,
    released: int,
) -> int:
    """SQLite, in the gateway's driver transaction (`portal.db.driver`): the debit of the
    usage record `record_id` (`amount`, negative; 0 posts nothing) and the balance move,
    with the release of `released` units the call held (`reservations.release_on_driver`
    dropped its hold) in the same UPDATE of the account, which returns the new balance: a
    debit that crossed a threshold adds a balance alert (`alerts`). The record's writer,
    `portal.usage.settlement`, made sure the account exists. Returns the amount posted."""
    now = utcnow()
    posted = 0
    if amount:
        entry = {"holder": user_id, "units": amount, "cause_id": call_id, "record_id": record_id}
        if await driver.fetch(_USAGE_ENTRY_ON_SQLITE, entry | {"now": now}):
            posted = amount
    if posted or released:
        move = {"holder": user_id, "units": posted, "released": released, "now": now}
        moved = await driver.fetch(_MOVE_AND_RELEASE_ON_SQLITE, move)
        if moved and posted:
            after, top_up_below = moved[0]
            low, top_up = alerts.crossed(after=after, posted=posted, top_up_below=top_up_below)
            if low or top_up:
                await alerts.add_alert_on_driver(
                    driver, user_id=user_id, balance=after, low_balance=low, top_up=top_up
                )
    return posted


async def ensure_account(session: Executor, user_id: str) -> None:
    await insert_ignore(session, CreditAccount, user_id=user_id, balance=0, reserved=0)


async def post_entry(
    session: Executor,
    *,
    user_id: str,
    amount: int,
    kind: str,
    cause_type: str,
    cause_id: str,
    note: str | None = None,
    usage_record_id: int | None = None,
) -> bool:
    """Append one entry and move the balance by `amount`. False if the cause was already posted."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError("ledger amounts are integers (units)")
    move: dict[str, Any] = {"holder": user_id, "units": amount}
    if dialect_name(session) == "postgresql":
        entry = {
            **move,
            "kind": kind,
            "cause_type": cause_type,
            "cause_id": cause_id,
            "note": note,
            "usage_record_id": usage_record_id,
            "now": utcnow(),
        }
        inserted, moved = (await session.execute(_POST_AT_ONCE, entry)).one()
        if inserted and not moved:  # the user's first entry
            await ensure_account(session, user_id)
            await session.execute(_MOVE_BALANCE, move)
        return bool(inserted)
    inserted = await insert_ignore(
        session,
        LedgerEntry,
        user_id=user_id,
        amount=amount,
        kind=kind,
        cause_type=cause_type,
        cause_id=cause_id,
        note=note,
        usage_record_id=usage_record_id,
    )
    if not inserted:
        return False
    if not affected_rows(await session.execute(_MOVE_BALANCE, move)):  # the user's first entry
        await ensure_account(session, user_id)
        await session.execute(_MOVE_BALANCE, move)
    return True


async def carry_forward(
    session: AsyncSession, *, user_id: str, amount: int, cause_id: str, note: str
) -> bool:
    """Append the sum of entries that leave `user_id`'s ledger in this same transaction
    (retention unlinks entries past the legal window from the person). The balance does
    not move: the user's entries still sum to it. Never use it for anything else."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError("ledger amounts are integers (units)")
    return await insert_ignore(
        session,
        LedgerEntry,
        user_id=user_id,
        amount=amount,
        kind=EntryKind.CARRY_FORWARD,
        cause_type=CauseType.RETENTION,
        cause_id=cause_id,
        note=note,
    )


async def balance(session: AsyncSession, user_id: str) -> int:
    value = await session.scalar(
        select(CreditAccount.balance).where(CreditAccount.user_id == user_id)
    )
    return int(value or 0)


async def balance_and_reserved(session: AsyncSession, user_id: str) -> tuple[int, int]:
    """(balance, units reserved by calls in flight)."""
    row = (
        await session.execute(
            select(CreditAccount.balance, CreditAccount.reserved).where(
                CreditAccount.user_id == user_id
            )
        )
    ).first()
    return (0, 0) if row is None else (int(row.balance), int(row.reserved))


async def available(session: AsyncSession, user_id: str) -> int:
    """Balance minus what calls in flight have reserved."""
    balance, reserved = await balance_and_reserved(session, user_id)
    return balance - reserved


async def ledger_sum(session: AsyncSession, user_id: str) -> int:
    """The balance recomputed from the ledger itself (the source of truth)."""
    value = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.user_id == user_id)
    )
    return int(value or 0)


async def list_entries(
    session: AsyncSession, user_id: str, *, limit: int = 100, offset: int = 0
) -> list[LedgerEntry]:
    result = await session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.user_id == user_id)
        .order_by(LedgerEntry.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(result)


@dataclass(frozen=True)
class Posted:
    """One entry as other modules read it."""

    id: int
    user_id: str | None
    amount: int
    created_at: datetime


_POSTED = (LedgerEntry.id, LedgerEntry.user_id, LedgerEntry.amount, LedgerEntry.created_at)


async def _posted(session: AsyncSession, *conditions: ColumnElement[bool]) -> Posted | None:
    row = (await session.execute(select(*_POSTED).where(*conditions))).first()
    return None if row is None else Posted(row.id, row.user_id, int(row.amount), row.created_at)


async def entry_for_cause(session: AsyncSession, cause_type: str, cause_id: str) -> Posted | None:
    """The entry posted for this cause, if any."""
    return await _posted(
        session, LedgerEntry.cause_type == cause_type, LedgerEntry.cause_id == cause_id
    )


async def sum_for_causes(session: AsyncSession, cause_type: str, cause_prefix: str) -> int:
    """The sum of the amounts of entries whose cause id starts with `cause_prefix`."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.cause_type == cause_type,
            LedgerEntry.cause_id.startswith(cause_prefix, autoescape=True),
        )
    )
    return int(total or 0)


async def balances_below(session: AsyncSession, threshold: int) -> list[tuple[str, int]]:
    """(user id, balance) of every account whose balance is under `threshold`."""
    rows = await session.execute(
        select(CreditAccount.user_id, CreditAccount.balance).where(
            CreditAccount.balance < threshold
        )
    )
    return [(row.user_id, int(row.balance)) for row in rows]


async def last_top_up(session: AsyncSession, user_id: str) -> Posted | None:
    """The user's latest entry that added credits."""
    entry_id = await session.scalar(
        select(func.max(LedgerEntry.id)).where(
            LedgerEntry.user_id == user_id, LedgerEntry.amount > 0
        )
    )
    return None if entry_id is None else await _posted(session, LedgerEntry.id == entry_id)


async def spent_after(session: AsyncSession, user_id: str, entry_id: int) -> bool:
    """Whether the user has any entry taking credits after entry `entry_id`."""
    spent = await session.scalar(
        select(func.count()).where(
            LedgerEntry.user_id == user_id, LedgerEntry.id > entry_id, LedgerEntry.amount < 0
        )
    )
    return bool(spent)


async def clear_notes(session: AsyncSession, user_id: str) -> None:
    """Account deletion: an operator's note could name the person; amount and cause stay."""
    await session.execute(
        update(LedgerEntry).where(LedgerEntry.user_id == user_id).values(note=None)
    )


async def unlink_usage(session: AsyncSession, usage_record_ids: Sequence[int]) -> None:
    """Retention anonymised these usage records: their entries no longer point at them."""
    if usage_record_ids:
        await session.execute(
            update(LedgerEntry)
            .where(LedgerEntry.usage_record_id.in_(usage_record_ids))
            .values(usage_record_id=None)
        )


async def unlink_from_people(
    session: AsyncSession, entry_ids: Sequence[int], *, cause_prefix: str
) -> None:
    """Retention, past the legal window: the entries keep amount, kind and date but lose
    user, note, usage link and cause (replaced by `cause_prefix` + the entry id). Call
    `carry_forward` for each user first, in the same transaction."""
    if entry_ids:
        await session.execute(
            update(LedgerEntry)
            .where(LedgerEntry.id.in_(entry_ids))
            .values(
                user_id=None,
                note=None,
                usage_record_id=None,
                cause_id=cause_prefix + cast(LedgerEntry.id, String),
            )
        )
