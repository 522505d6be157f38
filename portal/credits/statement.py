"""The ledger as a person reads it: one line per usage day, every other entry alone.

A busy day has hundreds of usage debits of a fraction of a credit each; listed one by
one they bury the grants, purchases, refunds and disputes that a person looks for. Here
usage debits are summed per UTC day (with their count); every other entry — grants,
purchases, subscriptions, clawbacks (refunds and disputes), adjustments — stays a line
of its own. Newest first, paged in SQL. The entries themselves are untouched: the JSON
API and the export list each one (`ledger.list_entries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Date, and_, cast, func, literal, not_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from portal.credits.models import CauseType, EntryKind, LedgerEntry

__all__ = ["USAGE_DAY", "StatementLine", "statement", "utc_day"]

USAGE_DAY = "usage"
"""The `kind` of a line that sums one UTC day's usage debits."""


@dataclass(frozen=True)
class StatementLine:
    at: datetime  # the entry's time; for a usage day, its latest debit's
    kind: str  # an EntryKind, or USAGE_DAY
    amount: int  # ledger units (a usage day: the sum of its debits)
    cause_type: str
    note: str | None
    calls: int  # usage debits summed in this line (0 for a single entry)


def utc_day(session: AsyncSession, column: Any) -> Any:
    """`column`'s UTC calendar day: a date on PostgreSQL, 'YYYY-MM-DD' text on SQLite
    (which keeps UTC text; date() takes its first ten characters)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


async def statement(
    session: AsyncSession, user_id: str, *, limit: int, offset: int = 0
) -> list[StatementLine]:
    entries = LedgerEntry.__table__.c
    usage = and_(entries.kind == EntryKind.DEBIT, entries.cause_type == CauseType.USAGE)
    singles = select(
        entries.created_at.label("at"),
        entries.kind.label("kind"),
        entries.amount.label("amount"),
        entries.cause_type.label("cause_type"),
        entries.note.label("note"),
        literal(0).label("calls"),
        entries.id.label("last_id"),
    ).where(entries.user_id == user_id, not_(usage))
    day = utc_day(session, entries.created_at)
    days = (
        select(
            func.max(entries.created_at).label("at"),
            literal(USAGE_DAY).label("kind"),
            func.sum(entries.amount).label("amount"),
            literal(CauseType.USAGE).label("cause_type"),
            literal(None).label("note"),
            func.count().label("calls"),
            func.max(entries.id).label("last_id"),
        )
        .where(entries.user_id == user_id, usage)
        .group_by(day)
    )
    lines = union_all(singles, days).subquery()
    rows = await session.execute(
        select(lines).order_by(lines.c.last_id.desc()).limit(limit).offset(offset)
    )
    return [
        StatementLine(
            at=_aware(row.at),
            kind=row.kind,
            amount=int(row.amount),
            cause_type=row.cause_type,
            note=row.note,
            calls=int(row.calls),
        )
        for row in rows
    ]


def _aware(value: datetime | str) -> datetime:
    """max() over a UTC column comes back untyped on SQLite: naive text, UTC by design."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
