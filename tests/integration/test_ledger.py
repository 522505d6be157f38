"""The ledger: append-only integer entries keyed by cause; the balance is their sum."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, event, func, select

from portal.credits import ledger
from portal.credits.models import CauseType, CreditAccount, EntryKind, LedgerEntry
from portal.db import Database
from tests.fixtures.gateway import MakeUser


async def post(db: Database, user_id: str, amount: int, cause_id: str, **kwargs) -> bool:
    async with db.transaction() as session:
        return await ledger.post_entry(
            session,
            user_id=user_id,
            amount=amount,
            kind=kwargs.pop("kind", None) or (EntryKind.GRANT if amount > 0 else EntryKind.DEBIT),
            cause_type=kwargs.pop("cause_type", CauseType.ADMIN),
            cause_id=cause_id,
            **kwargs,
        )


async def totals(db: Database, user_id: str) -> tuple[int, int, int]:
    """(balance, ledger sum, number of entries)"""
    async with db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.user_id == user_id)
        )
        return (
            await ledger.balance(session, user_id),
            await ledger.ledger_sum(session, user_id),
            int(count or 0),
        )


async def test_the_same_cause_is_posted_once(db: Database, make_user: MakeUser) -> None:
    user = await make_user("0")
    assert await post(db, user.user_id, 5_000, "evt_1", cause_type=CauseType.STRIPE_EVENT)
    assert not await post(db, user.user_id, 5_000, "evt_1", cause_type=CauseType.STRIPE_EVENT)
    # Even a retry with a different amount does not move the balance again.
    assert not await post(db, user.user_id, 9_999, "evt_1", cause_type=CauseType.STRIPE_EVENT)
    assert await totals(db, user.user_id) == (5_000, 5_000, 1)
    # The same id under another cause type is another cause.
    assert await post(db, user.user_id, 1, "evt_1", cause_type=CauseType.ADMIN)
    assert await totals(db, user.user_id) == (5_001, 5_001, 2)


async def test_duplicate_inside_one_transaction_is_ignored(
    db: Database, make_user: MakeUser
) -> None:
    user = await make_user("0")
    async with db.transaction() as session:
        for _ in range(3):
            await ledger.post_entry(
                session,
                user_id=user.user_id,
                amount=7,
                kind=EntryKind.GRANT,
                cause_type=CauseType.ADMIN,
                cause_id="twice",
            )
    assert await totals(db, user.user_id) == (7, 7, 1)


async def test_balance_is_the_ledger_sum_after_grants_and_debits(
    db: Database, make_user: MakeUser
) -> None:
    user, other = await make_user("0"), await make_user("0")
    amounts = [10**9, -123_456, -1, 42, 2 * 10**9, -(10**9), -40_000, 7]
    for index, amount in enumerate(amounts):
        assert await post(db, user.user_id, amount, f"mix-{index}")
        await post(db, user.user_id, amount, f"mix-{index}")  # every one retried
    assert await post(db, other.user_id, 55, "other")
    assert await totals(db, user.user_id) == (sum(amounts), sum(amounts), len(amounts))
    assert await totals(db, other.user_id) == (55, 55, 1)
    async with db.session() as session:
        entries = await ledger.list_entries(session, user.user_id)
    assert [e.amount for e in entries] == list(reversed(amounts))  # newest first
    assert all(type(e.amount) is int for e in entries)


async def test_a_correction_can_take_the_balance_below_zero(
    db: Database, make_user: MakeUser
) -> None:
    user = await make_user("1")
    assert await post(db, user.user_id, -3 * 10**9, "fix", kind=EntryKind.ADJUSTMENT)
    async with db.session() as session:
        assert await ledger.balance(session, user.user_id) == -2 * 10**9
        assert await ledger.available(session, user.user_id) == -2 * 10**9


@pytest.mark.parametrize("amount", [1.0, 0.5, Decimal("1"), "100", True, None])
async def test_non_integer_amounts_are_refused(
    db: Database, make_user: MakeUser, amount: object
) -> None:
    user = await make_user("1")
    with pytest.raises(TypeError, match="integers"):
        await post(db, user.user_id, amount, "bad", kind=EntryKind.GRANT)  # type: ignore[arg-type]
    assert await totals(db, user.user_id) == (10**9, 10**9, 1)


async def test_a_new_user_has_an_empty_account(db: Database, make_user: MakeUser) -> None:
    user = await make_user("0")
    async with db.session() as session:
        assert await ledger.balance(session, user.user_id) == 0
        assert await ledger.available(session, user.user_id) == 0
        assert await ledger.ledger_sum(session, user.user_id) == 0
        assert await ledger.balance(session, "no-such-user") == 0


async def test_an_entry_and_its_balance_move_are_one_statement_even_for_a_first_entry(
    db: Database, make_user: MakeUser
) -> None:
    """On PostgreSQL an entry and the balance move are one statement (it runs with every
    gateway call); a user without an account row yet gets one and the move. SQLite runs
    an INSERT and an UPDATE."""
    postgres = db.url.get_backend_name() == "postgresql"
    user = await make_user("0")
    async with db.transaction() as session:  # as if the account row was never created
        await session.execute(delete(CreditAccount).where(CreditAccount.user_id == user.user_id))
    assert await post(db, user.user_id, 3, "first")
    assert await totals(db, user.user_id) == (3, 3, 1)

    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(args[2].split()[0])

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        assert await post(db, user.user_id, -2, "second")
        assert sent == (["WITH"] if postgres else ["INSERT", "UPDATE"])
        sent.clear()
        assert not await post(db, user.user_id, -2, "second")  # already posted: no move
        assert sent == (["WITH"] if postgres else ["INSERT"])
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert await totals(db, user.user_id) == (1, 1, 2)
