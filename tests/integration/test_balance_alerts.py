"""A settlement that takes a balance below a threshold writes one balance alert, in the
settlement's own statement (PostgreSQL) or transaction (SQLite): the operator's
low-balance threshold and the person's auto top-up threshold, on both of the gateway's
write paths, and only once when two settlements race past it."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import select

from portal.billing.runtime import Billing
from portal.config.billing_settings import BillingSettings
from portal.credits import alerts, top_up_settings
from portal.credits.models import BalanceAlert
from portal.db import Database
from portal.email.messages import Mail
from portal.jobs import balance_alerts
from portal.jobs.balance_alerts import AlertJob
from tests.fixtures.databases import statements_sent
from tests.fixtures.gateway import MakeUser, eventually
from tests.integration.test_settlement import (
    FUNDS,
    Settle,
    finished,
    hold,
    settle,
    settle_as_the_gateway,
    state,
)

THRESHOLD = 600_000_000  # 0.6 credits: FUNDS (1 credit) less 0.4 crosses it


@pytest.fixture(params=["transaction", "gateway"])
def settles(request: pytest.FixtureRequest, gateway_db: Database) -> Settle:
    """The portal's and the spool's path (a transaction), and the gateway's (the driver)."""
    if request.param == "transaction":
        return settle
    return lambda _db, call: settle_as_the_gateway(gateway_db, call)


@pytest.fixture(autouse=True)
def low_balance_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "_low_balance", alerts._Threshold(THRESHOLD))


async def alert_rows(db: Database, user_id: str) -> list[tuple[bool, bool, int]]:
    async with db.session() as session:
        rows = await session.execute(
            select(BalanceAlert.low_balance, BalanceAlert.top_up, BalanceAlert.balance)
            .where(BalanceAlert.user_id == user_id)
            .order_by(BalanceAlert.id)
        )
        return [(bool(r.low_balance), bool(r.top_up), int(r.balance)) for r in rows]


async def test_a_crossing_writes_one_alert_and_staying_below_none(
    db: Database, settles: Settle, make_user: MakeUser
) -> None:
    user = await make_user("1")
    await settles(db, finished(user, credits=300_000_000))  # 0.7: above
    assert await alert_rows(db, user.user_id) == []
    await settles(db, finished(user, credits=200_000_000))  # 0.5: crossed
    assert await alert_rows(db, user.user_id) == [(True, False, 500_000_000)]
    await settles(db, finished(user, credits=100_000_000))  # 0.4: still below
    assert await alert_rows(db, user.user_id) == [(True, False, 500_000_000)]
    after = await state(db, user.user_id)
    assert after["balance"] == after["ledger_sum"] == FUNDS - 600_000_000


async def test_the_auto_top_up_threshold_is_the_persons(
    db: Database, settles: Settle, make_user: MakeUser
) -> None:
    """Above the operator's threshold, the person's own one (while auto top-up is on)."""
    user = await make_user("1")
    async with db.transaction() as session:
        await top_up_settings.save(
            session, user.user_id, enabled=True, threshold_units=800_000_000, amount_units=5
        )
    await settles(db, finished(user, credits=100_000_000))  # 0.9
    await settles(db, finished(user, credits=200_000_000))  # 0.7: top-up threshold crossed
    assert await alert_rows(db, user.user_id) == [(False, True, 700_000_000)]
    async with db.transaction() as session:
        await top_up_settings.turn_off(session, user.user_id, "card_declined")
    await settles(db, finished(user, credits=200_000_000))  # 0.5: low balance only (off)
    assert await alert_rows(db, user.user_id) == [
        (False, True, 700_000_000),
        (True, False, 500_000_000),
    ]


async def test_a_crossing_costs_the_gateway_no_round_trip_on_postgresql(
    db: Database, gateway_db: Database, make_user: MakeUser
) -> None:
    """PostgreSQL: still the one statement; SQLite: one INSERT more (the alert, after the
    account's UPDATE), only on a crossing; the token's counters are updated last."""
    postgres = db.url.get_backend_name() == "postgresql"
    user = await make_user("1")
    call = finished(user, credits=500_000_000)
    await hold(db, call)
    with statements_sent(gateway_db) as sent:
        assert await settle_as_the_gateway(gateway_db, call)
    on_sqlite = ["INSERT", "DELETE", "INSERT", "UPDATE", "INSERT", "UPDATE"]
    assert sent == (["WITH"] if postgres else on_sqlite)
    assert await alert_rows(db, user.user_id) == [(True, False, 500_000_000)]


async def test_two_settlements_racing_past_the_threshold_write_one_alert(
    db: Database, gateway_db: Database, make_user: MakeUser
) -> None:
    """The UPDATE of the account serialises them: only one sees the balance cross."""
    for _ in range(3):
        user = await make_user("1")
        # each alone would cross (1 -> 0.5); after each other only the first does
        calls = [finished(user, credits=500_000_000) for _ in range(2)]
        results = await asyncio.gather(*(settle_as_the_gateway(gateway_db, c) for c in calls))
        assert results == [True, True]
        assert await alert_rows(db, user.user_id) == [(True, False, 500_000_000)]
        assert (await state(db, user.user_id))["balance"] == 0


async def test_the_portals_job_is_woken_by_the_settlement_on_postgresql(
    db: Database, gateway_db: Database, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No poll at all (an hour): only the settlement's NOTIFY can wake the job."""
    if not db.is_postgresql:
        pytest.skip("SQLite has no notifications: there the job polls")
    monkeypatch.setattr(balance_alerts, "POLL_SECONDS_POSTGRESQL", 3600.0)
    sent: list[Mail] = []

    class Capture:
        async def send(self, mails: list[Mail]) -> None:
            sent.extend(mails)

    no_billing = Billing(BillingSettings(), "http://portal.test")
    job = AlertJob(db, Capture(), lambda: no_billing, "/dashboard")  # type: ignore[arg-type]
    first, second = await make_user("1"), await make_user("1")
    assert await settle_as_the_gateway(gateway_db, finished(first, credits=500_000_000))
    running = asyncio.create_task(job.run())
    try:  # its first pass finds the alert already there, and listens from then on
        await eventually(lambda: [m.to for m in sent] == [first.email], seconds=60, what="1st")
        assert await settle_as_the_gateway(gateway_db, finished(second, credits=500_000_000))
        await eventually(lambda: len(sent) == 2, seconds=60, what="woken by NOTIFY")
        assert sent[1].to == second.email and sent[1].kind == "low_balance"
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
