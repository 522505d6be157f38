"""`gateway-admin billing sync` and `billing replay` repair what missed webhooks left out,
and running them again changes nothing."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import pytest
import stripe

from portal.billing.runtime import Billing
from portal.cli.billing_commands import billing_replay, billing_sync
from portal.db import Database
from tests.billing.conftest import UNITS, MakeBuyer, StripeWorld, books, event_of, start_checkout
from tests.fakes.stripe_api import FakeStripe


async def admin(world: StripeWorld, *args: str) -> tuple[int, str, str]:
    settings = world.settings
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "WFG_CONFIG": str(settings.config_path),
        "WFG_VAR_DIR": str(settings.var_dir),
        "STRIPE_SECRET_KEY": world.fake.secret_key,
        "STRIPE_API_BASE": world.fake.url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "portal.cli.main",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def test_sync_repairs_a_subscription_whose_webhooks_never_came(
    stripe_world: StripeWorld,
    stripe_fake: FakeStripe,
    billing: Billing,
    db: Database,
    make_buyer: MakeBuyer,
) -> None:
    buyer = await make_buyer()
    stripe_fake.auto_deliver = False  # the endpoint was down
    session_id = await start_checkout(billing, db, buyer, "plan", "pro")
    events = stripe_fake.complete_checkout(session_id)
    charge_id = event_of(events, "charge.succeeded")["data"]["object"]["id"]
    stripe_fake.refund_charge(charge_id, amount=1000)  # a quarter of the $40 back

    code, out, err = await admin(stripe_world, "billing", "sync", "--email", buyer.email)
    assert code == 0, err
    assert "plan pro (active)" in out
    after = await books(db, buyer.user_id)
    assert (after.account.plan, after.account.status, after.plan) == ("pro", "active", "pro")
    assert after.balance == after.ledger_sum == 375 * UNITS  # 500 granted, 125 taken back

    # again (in-process: the same code without another interpreter start): nothing changes
    assert await billing_sync(argparse.Namespace(email=buyer.email), stripe_world.settings) == 0
    again = await books(db, buyer.user_id)
    assert again.balance == 375 * UNITS and len(again.entries) == len(after.entries)


async def test_replay_runs_fulfilment_for_one_event_once(
    stripe_world: StripeWorld,
    stripe_fake: FakeStripe,
    billing: Billing,
    db: Database,
    make_buyer: MakeBuyer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    buyer = await make_buyer()
    stripe_fake.auto_deliver = False
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    completed = event_of(stripe_fake.complete_checkout(session_id), "checkout.session.completed")

    replay = argparse.Namespace(event_id=completed["id"])
    for _ in range(2):  # the command's own code, in-process (the CLI wiring is tested above)
        assert await billing_replay(replay, stripe_world.settings) == 0
    assert capsys.readouterr().out.count("checkout.session.completed): replayed") == 2
    after = await books(db, buyer.user_id)
    assert after.balance == 10 * UNITS and len(after.entries) == 1
    assert after.events == 1

    with pytest.raises(stripe.InvalidRequestError, match="No such event"):
        await billing_replay(argparse.Namespace(event_id="evt_nope"), stripe_world.settings)
