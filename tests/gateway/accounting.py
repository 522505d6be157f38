"""Ledger checks shared by the fault, overspend and SIGKILL tests: what a user was
debited, per call, read straight from the ledger."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from portal.credits.models import EntryKind, LedgerEntry
from portal.db import Database
from portal.usage.models import UsageRecord

__all__ = ["debits_by_call", "usage_by_call"]


async def debits_by_call(db: Database, user_id: str) -> Counter[str]:
    """How many debit entries each call id has in the user's ledger."""
    async with db.session() as session:
        causes = await session.scalars(
            select(LedgerEntry.cause_id).where(
                LedgerEntry.user_id == user_id, LedgerEntry.kind == EntryKind.DEBIT
            )
        )
        return Counter(str(cause) for cause in causes)


async def usage_by_call(db: Database, user_id: str) -> dict[str, list[UsageRecord]]:
    """The user's usage records, grouped by call id."""
    async with db.session() as session:
        records = await session.scalars(select(UsageRecord).where(UsageRecord.user_id == user_id))
        grouped: dict[str, list[UsageRecord]] = {}
        for record in records:
            grouped.setdefault(record.call_id, []).append(record)
        return grouped
