"""Where credits are granted and debited. The only writer of `ledger_entries` and of
`credit_accounts.balance`; callers own the transaction.

Every entry is keyed by its cause (`cause_type`, `cause_id`): posting the same cause
twice writes nothing the second time, so retries and duplicate deliveries are safe.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.credits.models import CauseType, CreditAccount, EntryKind, LedgerEntry
from portal.db.upsert import WITHOUT_SESSION_SYNC, insert_ignore

__all__ = [
    "available",
    "balance_and_reserved",
    "balance",
    "carry_forward",
    "ensure_account",
    "ledger_sum",
    "list_entries",
    "post_entry",
]


async def ensure_account(session: AsyncSession, user_id: str) -> None:
    await insert_ignore(session, CreditAccount, user_id=user_id, balance=0, reserved=0)


async def post_entry(
    session: AsyncSession,
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
    await ensure_account(session, user_id)
    await session.execute(
        update(CreditAccount)
        .where(CreditAccount.user_id == user_id)
        .values(balance=CreditAccount.balance + amount),
        execution_options=WITHOUT_SESSION_SYNC,
    )
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
