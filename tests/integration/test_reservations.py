"""Reservations: credits held for calls in flight, so concurrent calls cannot overspend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select, update

from gateway_plugins import reservation
from portal.credits import ledger, reservations
from portal.credits.models import CreditAccount, Reservation
from portal.db import Database, utcnow
from portal.errors import InsufficientCredits
from tests.fixtures.databases import statements_sent
from tests.fixtures.gateway import MakeUser

TTL = 900


@pytest.fixture
def db(unswept_db: Database) -> Database:
    """A database no gateway runs on: one test expires a hold and expects `reserve`, not a
    gateway's background sweep, to free it (`make_user` creates users here too)."""
    return unswept_db


Reserve = Callable[..., Awaitable[str]]


async def reserve_in_transaction(db: Database, user_id: str, amount: int) -> str:
    """The portal's path: `reserve` in the caller's transaction."""
    call_id = f"call-{uuid.uuid4().hex}"
    async with db.transaction() as session:
        await reservations.reserve(
            session, user_id=user_id, call_id=call_id, amount=amount, ttl_seconds=TTL
        )
    return call_id


async def reserve_as_the_gateway(db: Database, user_id: str, amount: int) -> str:
    """The gateway's step 4: one statement in autocommit on PostgreSQL, else as above."""
    call_id = f"call-{uuid.uuid4().hex}"
    runtime: Any = SimpleNamespace(database=db, deadline_seconds=TTL)
    await reservation.reserve(runtime, user_id, call_id, amount)
    return call_id


@pytest.fixture(params=["transaction", "gateway"])
def reserve(request: pytest.FixtureRequest, gateway_db: Database) -> Reserve:
    if request.param == "transaction":
        return reserve_in_transaction
    return lambda _db, user_id, amount: reserve_as_the_gateway(gateway_db, user_id, amount)


async def release(db: Database, call_id: str) -> int:
    async with db.transaction() as session:
        return await reservations.release(session, call_id)


async def holds(db: Database, user_id: str) -> tuple[int, int, int]:
    """(balance, reserved, number of reservation rows)"""
    async with db.session() as session:
        account = await session.get(CreditAccount, user_id, populate_existing=True)
        rows = await session.scalar(
            select(func.count()).select_from(Reservation).where(Reservation.user_id == user_id)
        )
    assert account is not None
    return account.balance, account.reserved, int(rows or 0)


async def test_reserve_refuses_what_the_available_balance_does_not_cover(
    db: Database, make_user: MakeUser, reserve: Reserve
) -> None:
    user = await make_user("0.0000001")  # 100 units
    first = await reserve(db, user.user_id, 60)
    with pytest.raises(InsufficientCredits) as refused:
        await reserve(db, user.user_id, 41)
    assert refused.value.status_code == 402
    assert "Insufficient credits" in refused.value.message
    await reserve(db, user.user_id, 40)  # exactly what is left
    with pytest.raises(InsufficientCredits):
        await reserve(db, user.user_id, 1)
    assert await holds(db, user.user_id) == (100, 100, 2)
    async with db.session() as session:
        assert await ledger.available(session, user.user_id) == 0
    assert await release(db, first) == 60
    await reserve(db, user.user_id, 41)
    assert await holds(db, user.user_id) == (100, 81, 2)


async def test_no_credit_account_or_a_negative_balance_reserves_nothing(
    db: Database, make_user: MakeUser, reserve: Reserve
) -> None:
    broke = await make_user("0")
    with pytest.raises(InsufficientCredits):
        await reserve(db, broke.user_id, 1)
    with pytest.raises(InsufficientCredits):
        await reserve(db, "no-such-user", 1)
    with pytest.raises(ValueError, match="positive"):
        await reserve(db, broke.user_id, 0)
    assert await holds(db, broke.user_id) == (0, 0, 0)


async def test_release_is_idempotent(db: Database, make_user: MakeUser, reserve: Reserve) -> None:
    user = await make_user("1")
    call_id = await reserve(db, user.user_id, 700)
    other = await reserve(db, user.user_id, 300)
    assert await release(db, call_id) == 700
    assert await release(db, call_id) == 0
    assert await release(db, "never-reserved") == 0
    assert await holds(db, user.user_id) == (10**9, 300, 1)
    assert await release(db, other) == 300
    assert await holds(db, user.user_id) == (10**9, 0, 0)


async def test_expired_holds_are_freed_when_a_new_reservation_needs_room(
    db: Database, make_user: MakeUser, reserve: Reserve
) -> None:
    user = await make_user("0.0000001")  # 100 units
    stale = await reserve(db, user.user_id, 80)
    with pytest.raises(InsufficientCredits):  # not expired yet: it still holds its credits
        await reserve(db, user.user_id, 50)
    async with db.transaction() as session:  # the worker that held it crashed long ago
        await session.execute(
            update(Reservation)
            .where(Reservation.call_id == stale)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    fresh = await reserve(db, user.user_id, 50)
    assert await holds(db, user.user_id) == (100, 50, 1)
    assert await release(db, stale) == 0  # the late settlement finds nothing to release
    assert await release(db, fresh) == 50


async def test_concurrent_reservations_never_exceed_the_balance(
    db: Database, make_user: MakeUser, reserve: Reserve
) -> None:
    """Many independent transactions at once (one connection each): exactly as many
    succeed as the balance covers, whatever the interleaving."""
    user = await make_user("0.0000005")  # 500 units: covers 5 holds of 90
    attempts = 24
    results = await asyncio.gather(
        *(reserve(db, user.user_id, 90) for _ in range(attempts)), return_exceptions=True
    )
    granted = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert len(granted) == 5, results
    assert len(refused) == attempts - 5
    assert await holds(db, user.user_id) == (500, 450, 5)

    # Concurrent releases, each call settled twice: every hold is freed exactly once.
    released = await asyncio.gather(*(release(db, c) for c in granted + granted))
    assert sorted(released) == [0] * 5 + [90] * 5
    assert await holds(db, user.user_id) == (500, 0, 0)


async def test_the_gateway_holds_in_one_statement_on_postgresql(
    db: Database, gateway_db: Database, make_user: MakeUser
) -> None:
    """Per call, the hold is one autocommit statement sent by the driver itself: what keeps
    the gateway's database work per call low (bench/RESULTS.md). SQLite has no writable
    CTEs: there it is an UPDATE and an INSERT in one transaction, sent by the driver too.
    (The release is part of the settlement: tests/integration/test_settlement.py.)"""
    postgres = db.url.get_backend_name() == "postgresql"
    user = await make_user("0.0000001")  # 100 units
    with statements_sent(gateway_db) as sent:
        call_id = await reserve_as_the_gateway(gateway_db, user.user_id, 60)
    assert sent == (["WITH"] if postgres else ["UPDATE", "INSERT"])
    assert await holds(db, user.user_id) == (100, 60, 1)
    assert await release(db, call_id) == 60
    assert await holds(db, user.user_id) == (100, 0, 0)
