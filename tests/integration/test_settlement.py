"""Settlement: a finished call becomes one usage record and one debit, and its hold is
released, in one transaction; doing it again writes nothing new."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text

from gateway_plugins import reservation
from gateway_plugins.settlement import commit_settlement
from portal.credits import alerts, ledger, reservations
from portal.credits.models import CauseType, CreditAccount, EntryKind, LedgerEntry, Reservation
from portal.db import Database, utcnow
from portal.usage.models import CallStatus, UsageRecord
from portal.usage.settlement import FinishedCall, settle_call
from tests.fixtures.databases import statements_sent
from tests.fixtures.gateway import FundedUser, MakeUser

FUNDS = 10**9


def finished(user: FundedUser, *, credits: int = 40_000, **changes: object) -> FinishedCall:
    started = utcnow() - timedelta(seconds=2)
    call = FinishedCall(
        call_id=f"call-{uuid.uuid4().hex}",
        user_id=user.user_id,
        token_id=user.token_id,
        model="gpt-4.1-nano",
        status=CallStatus.SUCCESS,
        started_at=started,
        ended_at=started + timedelta(seconds=1),
        prompt_tokens=200,
        completion_tokens=50,
        cached_tokens=100,
        reasoning_tokens=10,
        upstream_cost_nano_usd=40_000,
        credits=credits,
        http_status=200,
    )
    return dataclasses.replace(call, **changes)  # type: ignore[arg-type]


async def hold(db: Database, call: FinishedCall, amount: int = 500_000) -> None:
    async with db.transaction() as session:
        await reservations.reserve(
            session, user_id=call.user_id, call_id=call.call_id, amount=amount, ttl_seconds=900
        )


async def settle(db: Database, call: FinishedCall) -> bool:
    """The portal's path (and the spool's): `settle_call` in one transaction."""
    async with db.transaction() as session:
        return await settle_call(session, call)


async def settle_as_the_gateway(db: Database, call: FinishedCall) -> bool:
    """The gateway's step 7 on `db` opened as the gateway opens it: sent by the driver (one
    autocommit statement on PostgreSQL, one transaction on SQLite)."""
    return await commit_settlement(db, call, touch_token=False)


Settle = Callable[[Database, FinishedCall], Awaitable[bool]]


@pytest.fixture(params=["transaction", "gateway"])
def settles(request: pytest.FixtureRequest, gateway_db: Database) -> Settle:
    if request.param == "transaction":
        return settle
    return lambda _db, call: settle_as_the_gateway(gateway_db, call)


async def uncounted_hold(db: Database, call: FinishedCall) -> None:
    """A hold the account never counted (a row edited by hand)."""
    async with db.transaction() as session:
        session.add(
            Reservation(
                call_id=call.call_id,
                user_id=call.user_id,
                amount=123,
                expires_at=utcnow() + timedelta(minutes=5),
            )
        )


async def state(db: Database, user_id: str) -> dict[str, int]:
    """Everything a settlement may touch for one user."""
    async with db.session() as session:

        async def count(model: type, *where: object) -> int:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)))

        account = await session.get(CreditAccount, user_id, populate_existing=True)
        assert account is not None
        return {
            "records": await count(UsageRecord, UsageRecord.user_id == user_id),
            "debits": await count(
                LedgerEntry, LedgerEntry.user_id == user_id, LedgerEntry.kind == EntryKind.DEBIT
            ),
            "holds": await count(Reservation, Reservation.user_id == user_id),
            "balance": account.balance,
            "reserved": account.reserved,
            "ledger_sum": await ledger.ledger_sum(session, user_id),
        }


async def test_one_record_one_debit_and_the_hold_released(
    db: Database, make_user: MakeUser, settles: Settle
) -> None:
    user = await make_user("1")
    call = finished(user)
    await hold(db, call)
    assert (await state(db, user.user_id))["reserved"] == 500_000
    assert await settles(db, call)
    after = await state(db, user.user_id)
    assert after == {
        "records": 1,
        "debits": 1,
        "holds": 0,
        "balance": FUNDS - 40_000,
        "reserved": 0,
        "ledger_sum": FUNDS - 40_000,
    }
    async with db.session() as session:
        record = await session.scalar(
            select(UsageRecord).where(UsageRecord.call_id == call.call_id)
        )
        entry = await session.scalar(
            select(LedgerEntry).where(
                LedgerEntry.cause_type == CauseType.USAGE, LedgerEntry.cause_id == call.call_id
            )
        )
    assert record is not None and entry is not None
    assert (record.status, record.credits, record.prompt_tokens, record.completion_tokens) == (
        CallStatus.SUCCESS,
        40_000,
        200,
        50,
    )
    assert (record.cached_tokens, record.reasoning_tokens, record.token_id) == (
        100,
        10,
        user.token_id,
    )
    assert record.started_at == call.started_at and record.ended_at == call.ended_at
    assert (entry.amount, entry.usage_record_id, entry.user_id) == (
        -40_000,
        record.id,
        user.user_id,
    )


async def test_settling_twice_writes_nothing_new(
    db: Database, make_user: MakeUser, settles: Settle
) -> None:
    user = await make_user("1")
    call = finished(user)
    await hold(db, call)
    assert await settles(db, call)
    once = await state(db, user.user_id)
    assert not await settles(db, call)
    # A duplicate callback with different numbers changes nothing either.
    assert not await settles(db, dataclasses.replace(call, credits=999_999, prompt_tokens=1))
    assert await state(db, user.user_id) == once
    assert once["balance"] == FUNDS - 40_000


async def test_a_failed_row_is_upgraded_by_a_later_success(
    db: Database, make_user: MakeUser, settles: Settle
) -> None:
    """A fallback: the first attempt failed, the same call then succeeded elsewhere."""
    user = await make_user("1")
    success = finished(user)
    failure = dataclasses.replace(
        success,
        status=CallStatus.FAILED,
        prompt_tokens=0,
        completion_tokens=0,
        credits=0,
        http_status=503,
        error_type="ServiceUnavailableError",
    )
    await hold(db, success)
    assert await settles(db, failure)
    failed = await state(db, user.user_id)
    assert (failed["records"], failed["debits"], failed["balance"]) == (1, 0, FUNDS)
    assert await settles(db, success)
    assert not await settles(db, success)
    assert not await settles(db, failure)  # a late failure never downgrades a success
    after = await state(db, user.user_id)
    assert (after["records"], after["debits"], after["balance"]) == (1, 1, FUNDS - 40_000)
    async with db.session() as session:
        record = await session.scalar(
            select(UsageRecord).where(UsageRecord.call_id == success.call_id)
        )
    assert record is not None
    assert (record.status, record.credits, record.http_status, record.error_type) == (
        CallStatus.SUCCESS,
        40_000,
        200,
        None,
    )


async def test_a_free_or_failed_call_is_recorded_without_a_debit(
    db: Database, make_user: MakeUser, settles: Settle
) -> None:
    user = await make_user("1")
    call = finished(user, credits=0, status=CallStatus.FAILED, error_type="BadRequestError")
    await hold(db, call)
    assert await settles(db, call)
    after = await state(db, user.user_id)
    assert (after["records"], after["debits"], after["holds"], after["reserved"]) == (1, 0, 0, 0)
    with pytest.raises(ValueError, match="cannot credit"):
        await settles(db, finished(user, credits=-5))


async def test_an_error_after_settling_rolls_the_settlement_back(
    db: Database, make_user: MakeUser
) -> None:
    user = await make_user("1")
    call = finished(user)
    await hold(db, call)
    before = await state(db, user.user_id)
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            assert await settle_call(session, call)
            raise RuntimeError("the connection dropped before COMMIT")
    assert await state(db, user.user_id) == before
    assert await settle(db, call)
    assert (await state(db, user.user_id))["balance"] == FUNDS - 40_000


async def test_the_gateway_settles_in_one_statement_on_postgresql(
    db: Database, gateway_db: Database, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's common case, sent by the driver: the record, its debit, the balance
    move, the release of the hold and the token's spending counters in one statement, no
    transaction round trips (bench/RESULTS.md). SQLite: one transaction of five (record,
    hold, debit, account, token). (No threshold crossed: a crossing adds one INSERT on
    SQLite, test_balance_alerts.py.)"""
    monkeypatch.setattr(alerts, "_low_balance", alerts._Threshold(0))
    postgres = db.url.get_backend_name() == "postgresql"
    user = await make_user("1")
    call = finished(user)
    await hold(db, call)
    with statements_sent(gateway_db) as sent:
        assert await settle_as_the_gateway(gateway_db, call)
    assert sent == (["WITH"] if postgres else ["INSERT", "DELETE", "INSERT", "UPDATE", "UPDATE"])
    after = await state(db, user.user_id)
    assert (after["records"], after["debits"], after["holds"], after["reserved"]) == (1, 1, 0, 0)
    assert after["balance"] == after["ledger_sum"] == FUNDS - 40_000


async def test_without_a_credit_account_the_gateway_writes_nothing_at_once(
    db: Database, gateway_db: Database, make_user: MakeUser
) -> None:
    """No account row (a debit could not move a balance): the one-statement path writes
    nothing and the full path settles, creating the account."""
    user = await make_user("0")
    async with db.transaction() as session:
        await session.execute(delete(CreditAccount).where(CreditAccount.user_id == user.user_id))
    call = finished(user, credits=7)
    assert await settle_as_the_gateway(gateway_db, call)
    assert not await settle_as_the_gateway(gateway_db, call)
    after = await state(db, user.user_id)
    assert (after["records"], after["debits"], after["balance"], after["ledger_sum"]) == (
        1,
        1,
        -7,
        -7,
    )


async def test_a_hold_the_account_never_counted_does_not_block_the_settlement(
    db: Database, make_user: MakeUser, settles: Settle
) -> None:
    """The hold is released in the settlement's UPDATE of the account: a hold larger than
    what the account has reserved (never the case unless rows were edited by hand) leaves
    `reserved` at 0 rather than failing the debit with it. Both paths run the same
    statements."""
    user = await make_user("1")
    call = finished(user)
    await uncounted_hold(db, call)
    assert await settles(db, call)
    after = await state(db, user.user_id)
    assert (after["records"], after["debits"], after["holds"], after["reserved"]) == (1, 1, 0, 0)
    assert after["balance"] == after["ledger_sum"] == FUNDS - 40_000


async def test_the_gateway_writes_times_as_the_portal_does(
    db: Database, gateway_db: Database, make_user: MakeUser
) -> None:
    """Statements the driver sends (`portal.db.driver`) convert their values as SQLAlchemy
    does: on SQLite a time is stored as the same text, so comparisons between rows written
    by either stay right (hold expiry, retention windows)."""
    user = await make_user("1")
    call, portal_written = finished(user), finished(user)
    runtime: Any = SimpleNamespace(database=gateway_db, deadline_seconds=900)
    await reservation.reserve(runtime, user.user_id, call.call_id, 500_000)
    await hold(db, portal_written)
    times = "SELECT created_at, expires_at FROM reservations ORDER BY id"
    async with db.session() as session:
        holds = (await session.execute(text(times))).all()
    assert await settle_as_the_gateway(gateway_db, call)
    assert await settle(db, portal_written)
    async with db.session() as session:
        rows = (
            await session.execute(
                select(UsageRecord.started_at, UsageRecord.ended_at)
                .where(UsageRecord.call_id.in_([call.call_id, portal_written.call_id]))
                .order_by(UsageRecord.id)
            )
        ).all()
        records = (
            await session.execute(
                text("SELECT started_at, ended_at, created_at FROM usage_records ORDER BY id")
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (call.started_at, call.ended_at),
        (portal_written.started_at, portal_written.ended_at),
    ]
    if db.url.get_backend_name() == "sqlite":
        shape = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?$")
        stored = [value for row in [*holds, *records] for value in row]
        assert len(stored) == 10
        assert all(isinstance(v, str) and shape.match(v) for v in stored), stored
