"""The usage spool keeps settlements the database could not take, and a later replay
settles each exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from portal.credits import ledger, reservations
from portal.credits.models import EntryKind, LedgerEntry
from portal.db import Database, open_database, utcnow
from portal.usage.models import CallStatus, UsageRecord
from portal.usage.settlement import FinishedCall, settle_call
from portal.usage.spool import Spool
from tests.fixtures.gateway import FundedUser, MakeUser

FUNDS = 10**9


def call_for(user: FundedUser | str, credits: int = 40_000) -> FinishedCall:
    started = utcnow() - timedelta(seconds=1)
    return FinishedCall(
        call_id=f"call-{uuid.uuid4().hex}",
        user_id=user if isinstance(user, str) else user.user_id,
        token_id=None if isinstance(user, str) else user.token_id,
        model="gpt-4.1-nano",
        status=CallStatus.SUCCESS,
        started_at=started,
        ended_at=started + timedelta(milliseconds=750),
        prompt_tokens=200,
        completion_tokens=50,
        upstream_cost_nano_usd=credits,
        credits=credits,
        http_status=200,
    )


def settler(database: Database):
    """What the gateway's replay loop does with each spooled call."""

    async def settle(call: FinishedCall) -> None:
        async with database.transaction() as session:
            await settle_call(session, call)

    return settle


@pytest.fixture
async def database_down() -> AsyncIterator[Database]:
    """A Database whose server does not answer (nothing listens on port 1)."""
    database = open_database("postgresql://postgres@127.0.0.1:1/unreachable")
    yield database
    await database.dispose()


async def account(db: Database, user_id: str) -> tuple[int, int, int, int]:
    """(usage records, debits, balance, reserved)"""
    async with db.session() as session:
        records = await session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.user_id == user_id)
        )
        debits = await session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.user_id == user_id, LedgerEntry.kind == EntryKind.DEBIT)
        )
        balance = await ledger.balance(session, user_id)
        assert balance == await ledger.ledger_sum(session, user_id)
        reserved = balance - await ledger.available(session, user_id)
    return int(records or 0), int(debits or 0), balance, reserved


async def test_append_and_replay_round_trip(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    seen: list[FinishedCall] = []

    async def collect(call: FinishedCall) -> None:
        seen.append(call)

    assert spool.pending() == 0
    assert await spool.replay(collect) == 0  # nothing spooled yet: no directory either
    calls = [
        call_for("u1"),
        dataclasses.replace(call_for("u2"), status=CallStatus.FAILED, error_type="Timeout"),
        dataclasses.replace(call_for("u3"), cached_tokens=7, reasoning_tokens=9, token_id="t"),
    ]
    for call in calls:
        spool.append(call)
    assert spool.pending() == 3
    lines = [
        json.loads(line)
        for path in (tmp_path / "spool").iterdir()
        for line in path.read_text().splitlines()
    ]
    assert [line["call_id"] for line in lines] == [c.call_id for c in calls]

    assert await spool.replay(collect) == 3
    assert seen == calls  # every field, timestamps with their time zone included
    assert spool.pending() == 0
    assert list((tmp_path / "spool").iterdir()) == []


async def test_replay_while_the_database_is_down_keeps_every_line(
    db: Database, database_down: Database, make_user: MakeUser, tmp_path: Path
) -> None:
    user = await make_user("1")
    calls = [call_for(user, credits=1_000 * (i + 1)) for i in range(4)]
    for call in calls:
        async with db.transaction() as session:
            await reservations.reserve(
                session, user_id=user.user_id, call_id=call.call_id, amount=50_000, ttl_seconds=60
            )
    spool = Spool(tmp_path / "spool")
    for call in calls[:3]:
        spool.append(call)

    assert await spool.replay(settler(database_down)) == 0
    assert spool.pending() == 3
    spool.append(calls[3])  # the gateway keeps spooling meanwhile
    assert await spool.replay(settler(database_down)) == 0
    assert spool.pending() == 4
    assert await account(db, user.user_id) == (0, 0, FUNDS, 200_000)

    assert await spool.replay(settler(db)) == 4
    assert spool.pending() == 0
    assert await account(db, user.user_id) == (4, 4, FUNDS - 10_000, 0)

    # A line spooled twice (or replayed again after a crash) settles nothing new.
    spool.append(calls[0])
    spool.append(calls[0])
    assert await spool.replay(settler(db)) == 2
    assert await account(db, user.user_id) == (4, 4, FUNDS - 10_000, 0)


async def test_a_replay_interrupted_by_a_crash_is_picked_up_again(
    db: Database, make_user: MakeUser, tmp_path: Path
) -> None:
    """A replayer that died mid-file leaves its claimed file behind: nothing is lost,
    and the lines it had already settled are not debited twice."""
    user = await make_user("1")
    directory = tmp_path / "spool"
    spool = Spool(directory)
    calls = [call_for(user, credits=100), call_for(user, credits=200)]
    for call in calls:
        spool.append(call)
    await settler(db)(calls[0])  # settled before the crash
    (spooled,) = directory.glob("usage-*.jsonl")
    spooled.rename(directory / "claimed-0123abcd.replaying")  # how a claimed file looks
    spool.append(call_for(user, credits=400))  # the same worker spools on
    assert spool.pending() == 3

    assert await spool.replay(settler(db)) == 3
    assert spool.pending() == 0
    assert list(directory.iterdir()) == []
    assert await account(db, user.user_id) == (3, 3, FUNDS - 700, 0)


async def test_a_line_that_can_never_settle_is_set_aside(
    db: Database, make_user: MakeUser, tmp_path: Path
) -> None:
    """A malformed line, or a call of an account deleted since, must not block the
    calls after it forever."""
    user = await make_user("1")
    spool = Spool(tmp_path / "spool")
    spool.append(call_for(user, credits=100))
    spool.append(call_for("deleted-user-id", credits=5))
    (path,) = (tmp_path / "spool").glob("usage-*.jsonl")
    with path.open("a") as handle:
        handle.write('{"call_id": "half a line\n')
    spool.append(call_for(user, credits=300))

    assert await spool.replay(settler(db)) == 2
    assert spool.pending() == 0
    assert spool.rejected() == 2
    assert await account(db, user.user_id) == (2, 2, FUNDS - 400, 0)
    assert await spool.replay(settler(db)) == 0  # set aside, not retried in a loop


async def test_spooling_while_a_replay_runs_loses_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    first, second = call_for("u1"), call_for("u2")
    spool.append(first)
    settling, proceed = asyncio.Event(), asyncio.Event()
    seen: list[FinishedCall] = []

    async def slow(call: FinishedCall) -> None:
        seen.append(call)
        settling.set()
        await proceed.wait()

    replay = asyncio.create_task(spool.replay(slow))
    await asyncio.wait_for(settling.wait(), 10)
    spool.append(second)  # the worker keeps spooling (and must not wait for the replay)
    assert spool.pending() == 2
    proceed.set()
    assert await replay == 1
    assert spool.pending() == 1
    assert await spool.replay(slow) == 1
    assert seen == [first, second]
    assert spool.pending() == 0
