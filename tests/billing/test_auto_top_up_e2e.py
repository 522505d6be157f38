"""Auto top-up and the low-balance email, end to end: the real gateway and portal processes
on one database, the official openai SDK as the client, the Stripe fake (off-session
PaymentIntents, signed webhooks) and an SMTP server on loopback.

A call through the gateway takes the balance below a threshold; the settlement's own
statement writes the alert; the portal process picks it up at once (LISTEN/NOTIFY on
PostgreSQL, a short poll on SQLite) and emails, or charges the card a Checkout saved;
credits come only with Stripe's signed `payment_intent.succeeded`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from portal.accounts.service import create_user
from portal.billing import flows
from portal.billing.models import AttemptStatus, AutoTopUpAttempt
from portal.billing.runtime import Billing, build_billing
from portal.config import load_plugin_settings
from portal.credits import ledger, top_up_settings
from portal.credits.models import CauseType, EntryKind, LedgerEntry
from portal.db import Database
from portal.settings import Settings
from portal.tokens.service import create_token
from tests.billing.conftest import write_config
from tests.fakes.stripe_api import FakeStripe
from tests.fixtures.gateway import (
    RunningGateway,
    eventually,
    free_port,
    start_gateway,
    stop_gateway,
)
from tests.fixtures.portal_process import running_portal
from tests.portal.support import PASSWORD, Browser, sign_in_with_chromium

pytestmark = [pytest.mark.gateway, pytest.mark.portal_process]

UNITS = 10**9
MODEL = "gpt-4.1-nano"
MESSAGES = [{"role": "user", "content": "What is two plus two"}]
LOW_BALANCE = 2  # credits (config.yaml's low_balance_credits, for this world)
THRESHOLD, AMOUNT = 5, 5  # what the people here choose for auto top-up
AUTO_TOP_UP = {
    "enabled": True,
    "currency": "usd",
    "minor_units_per_credit": 100,
    "min_threshold_credits": 1,
    "max_threshold_credits": 50,
    "min_amount_credits": 5,
    "max_amount_credits": 100,
    "max_per_day": 3,
}
WAIT = 90.0  # a ceiling on a busy machine, never a fixed wait


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)  # type: ignore[attr-defined]
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str, kind: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address and m["X-WFG-Kind"] == kind]


@dataclass
class World:
    fake: FakeStripe
    gateway: RunningGateway
    portal_url: str
    portal_log: Path
    settings: Settings
    inbox: Inbox
    pack_price: str


def _config(work: Path, pack_price: str) -> Path:
    import yaml

    path = write_config(work, {"basic": "price_x1", "pro": "price_x2", "small": pack_price})
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["workforce_gateway"]["billing"]["plans"] = {}
    config["workforce_gateway"]["billing"]["auto_top_up"] = AUTO_TOP_UP
    config["workforce_gateway"]["credits"]["low_balance_credits"] = LOW_BALANCE
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world(
    database_url: str, upstream: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    work = tmp_path_factory.mktemp("auto-top-up")
    fake = FakeStripe().start()
    pack_price = fake.create_price(unit_amount=1000, product_name="10 credits")
    config = _config(work, pack_price)
    inbox, smtp_port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env = {
        "WFG_DATABASE_URL": database_url,
        "WFG_VAR_DIR": str(work / "var"),
        "WFG_CONFIG": str(config),
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "STRIPE_SECRET_KEY": fake.secret_key,
        "STRIPE_WEBHOOK_SECRET": fake.webhook_secret,
        "STRIPE_API_BASE": fake.url,
    }
    gateway = None
    try:
        with running_portal(work, env) as portal:
            fake.webhook_url = f"{portal.url}/stripe/webhook"
            gateway = start_gateway(
                database_url=database_url,
                upstream=upstream,  # type: ignore[arg-type]
                work_dir=work,
                extra_env={"WFG_CONFIG": str(config)},
            )
            settings = Settings.from_env({**portal.env, "WFG_ENV_FILE": ""})
            yield World(fake, gateway, portal.url, portal.log, settings, inbox, pack_price)
    finally:
        if gateway is not None:
            stop_gateway(gateway)
        smtp.stop()
        fake.stop()


@pytest.fixture
async def billing(world: World) -> AsyncIterator[Billing]:
    catalog = load_plugin_settings(world.settings.config_path).billing
    context = build_billing(world.settings, catalog)
    yield context
    await context.aclose()


@pytest.fixture
def stripe(world: World, db: Database) -> Iterator[FakeStripe]:
    world.fake.errors.clear()
    yield world.fake
    world.fake.wait_for_deliveries()
    assert not world.fake.errors, world.fake.errors


@dataclass
class Person:
    user_id: str
    email: str
    token: str
    customer: str | None = None


async def person(db: Database, units: int = 0) -> Person:
    email = f"p-{uuid.uuid4().hex[:10]}@example.com"
    async with db.transaction() as session:
        user = await create_user(
            session, email=email, name="Pat Payer", password=PASSWORD, verified=True
        )
        token, _row = await create_token(session, user, name="app")
        await ledger.ensure_account(session, user.id)
        if units:
            await _post(session, user.id, units)
    return Person(user.id, email, token)


async def _post(session: object, user_id: str, units: int) -> None:
    await ledger.post_entry(
        session,  # type: ignore[arg-type]
        user_id=user_id,
        amount=units,
        kind=EntryKind.ADJUSTMENT,
        cause_type=CauseType.ADMIN,
        cause_id=f"test-{uuid.uuid4()}",
        note="test set-up",
    )


async def balance(db: Database, user_id: str) -> int:
    async with db.session() as session:
        return await ledger.balance(session, user_id)


async def set_balance(db: Database, user_id: str, units: int) -> None:
    async with db.transaction() as session:
        await _post(session, user_id, units - await ledger.balance(session, user_id))


async def buyer_with_saved_card(world: World, db: Database, billing: Billing) -> Person:
    """Someone who bought a pack on Checkout (which saved the card for later)."""
    buyer = await person(db)
    url = await flows.start_checkout(
        db, billing, user_id=buyer.user_id, email=buyer.email, kind="pack", item_id="small"
    )
    session_id = url.rsplit("/", 1)[-1]
    world.fake.complete_checkout(session_id)
    buyer.customer = world.fake.checkout_sessions[session_id]["customer"]

    async def granted() -> bool:
        return await balance(db, buyer.user_id) == 10 * UNITS

    await eventually(granted, seconds=WAIT, what="the pack granted")
    return buyer


async def portal_browser(world: World, email: str) -> Browser:
    browser = Browser(httpx.AsyncClient(base_url=world.portal_url, timeout=120))
    response = await browser.sign_in(email)
    assert response.status_code == 303, response.text
    return browser


async def choose_auto_top_up(world: World, who: Person, **form: str) -> httpx.Response:
    browser = await portal_browser(world, who.email)
    try:
        fields = {"enabled": "on", "threshold": str(THRESHOLD), "amount": str(AMOUNT), **form}
        return await browser.post("/billing/auto-top-up", fields, page="/billing/auto-top-up")
    finally:
        await browser.client.aclose()


async def attempts(db: Database, user_id: str) -> list[AutoTopUpAttempt]:
    async with db.session() as session:
        rows = await session.scalars(
            select(AutoTopUpAttempt)
            .where(AutoTopUpAttempt.user_id == user_id)
            .order_by(AutoTopUpAttempt.sequence)
        )
        return list(rows)


async def grants_for(db: Database, cause_id: str) -> int:
    async with db.session() as session:
        count = await session.scalar(
            select(func.count()).where(
                LedgerEntry.cause_type == CauseType.STRIPE_EVENT, LedgerEntry.cause_id == cause_id
            )
        )
        return int(count or 0)


def intents_of(fake: FakeStripe, user_id: str) -> list[dict]:
    with fake.lock:
        return [
            pi
            for pi in fake.payment_intents.values()
            if pi["metadata"].get("user_id") == user_id and "wfg_auto_top_up" in pi["metadata"]
        ]


async def call(world: World, who: Person) -> None:
    client = world.gateway.async_client(who.token)
    await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)


async def credits(world: World, who: Person) -> dict:
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.get(
            f"{world.gateway.url}/v1/credits", headers={"authorization": f"Bearer {who.token}"}
        )
    assert response.status_code == 200, response.text
    return response.json()


# ----------------------------------------------------------------------- tests
async def test_a_call_below_the_threshold_tops_up_once_from_the_webhook(
    world: World, stripe: FakeStripe, db: Database, billing: Billing
) -> None:
    buyer = await buyer_with_saved_card(world, db, billing)
    chosen = await choose_auto_top_up(world, buyer)
    assert chosen.status_code == 303, chosen.text
    await set_balance(db, buyer.user_id, THRESHOLD * UNITS + 1)  # the next call crosses it
    assert await attempts(db, buyer.user_id) == []  # nothing before a crossing

    await call(world, buyer)
    [attempt] = await eventually(
        lambda: _finished(db, buyer.user_id), seconds=WAIT, what="the top-up credited"
    )
    assert attempt.status == AttemptStatus.SUCCEEDED and attempt.sequence == 1
    [intent] = intents_of(stripe, buyer.user_id)
    assert (intent["status"], intent["amount"], intent["customer"]) == (
        "succeeded", AMOUNT * 100, buyer.customer,
    )  # fmt: skip
    assert intent["id"] == attempt.payment_intent_id
    assert await grants_for(db, intent["id"]) == 1
    after = await balance(db, buyer.user_id)
    assert THRESHOLD * UNITS < after < (THRESHOLD + AMOUNT) * UNITS + 1
    shown = await credits(world, buyer)
    assert shown["balance_units"] == after and shown["low_balance"] is False

    # Stripe delivers the same event again: nothing more is granted
    [event] = stripe.events_of(
        "payment_intent.succeeded", user_id=buyer.user_id, wfg_auto_top_up="1"
    )
    again = stripe.redeliver(event["id"])
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert await grants_for(db, intent["id"]) == 1
    assert await balance(db, buyer.user_id) == after

    # the portal shows the last attempt and its result
    browser = await portal_browser(world, buyer.email)
    page = (await browser.get("/billing/auto-top-up")).text
    await browser.client.aclose()
    assert 'data-status="succeeded"' in page and "Paid and credited" in page


async def _finished(db: Database, user_id: str) -> list[AutoTopUpAttempt] | None:
    found = await attempts(db, user_id)
    return found if found and all(a.finished_at is not None for a in found) else None


async def test_two_calls_racing_past_the_threshold_start_one_top_up(
    world: World, stripe: FakeStripe, db: Database, billing: Billing
) -> None:
    buyer = await buyer_with_saved_card(world, db, billing)
    assert (await choose_auto_top_up(world, buyer)).status_code == 303
    await set_balance(db, buyer.user_id, THRESHOLD * UNITS + 1)

    await asyncio.gather(*(call(world, buyer) for _ in range(3)))
    [attempt] = await eventually(
        lambda: _finished(db, buyer.user_id), seconds=WAIT, what="the top-up credited"
    )
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert len(intents_of(stripe, buyer.user_id)) == 1
    assert await grants_for(db, str(attempt.payment_intent_id)) == 1
    after = await balance(db, buyer.user_id)
    assert THRESHOLD * UNITS < after < (THRESHOLD + AMOUNT) * UNITS + 1


@pytest.mark.parametrize(
    ("outcome", "code"),
    [("decline", "card_declined"), ("authentication_required", "authentication_required")],
    ids=["declined", "3ds-required"],
)
async def test_a_refused_payment_turns_auto_top_up_off_and_says_how_to_fix_it(
    world: World, stripe: FakeStripe, db: Database, billing: Billing, outcome: str, code: str
) -> None:
    buyer = await buyer_with_saved_card(world, db, billing)
    assert (await choose_auto_top_up(world, buyer)).status_code == 303
    assert buyer.customer is not None
    stripe.set_off_session_outcome(buyer.customer, outcome)
    await set_balance(db, buyer.user_id, THRESHOLD * UNITS + 1)
    await call(world, buyer)
    before = await balance(db, buyer.user_id)

    [mail] = await eventually(
        lambda: world.inbox.to(buyer.email, "auto_top_up_failed"), seconds=WAIT, what="mail"
    )
    text = mail.get_content()
    assert f"{world.portal_url}/billing/auto-top-up" in text and "now off" in text
    [attempt] = await attempts(db, buyer.user_id)
    assert (attempt.status, attempt.error_code) == (AttemptStatus.FAILED, code)
    async with db.session() as session:
        setting = await top_up_settings.get(session, buyer.user_id)
    assert setting is not None and not setting.enabled and setting.off_reason == code
    [intent] = intents_of(stripe, buyer.user_id)
    assert intent["status"] == "requires_payment_method"
    assert await balance(db, buyer.user_id) == before  # nothing granted
    assert await grants_for(db, intent["id"]) == 0

    browser = await portal_browser(world, buyer.email)
    page = (await browser.get("/billing/auto-top-up")).text
    await browser.client.aclose()
    assert 'data-status="failed"' in page and code.replace("_", " ") in page
    assert 'id="auto-top-up-off"' in page
    stripe.off_session_outcomes.pop(buyer.customer)


async def crossing_with_a_processing_payment(
    world: World, stripe: FakeStripe, db: Database, billing: Billing
) -> Person:
    """Someone with auto top-up on whose call crossed the threshold, and whose bank
    answers the top-up's payment later (Stripe says "processing")."""
    buyer = await buyer_with_saved_card(world, db, billing)
    assert (await choose_auto_top_up(world, buyer)).status_code == 303
    assert buyer.customer is not None
    stripe.set_off_session_outcome(buyer.customer, "processing")
    await set_balance(db, buyer.user_id, THRESHOLD * UNITS + 1)
    await call(world, buyer)
    return buyer


async def test_a_processing_payment_the_bank_declines_later_turns_auto_top_up_off_once(
    world: World, stripe: FakeStripe, db: Database, billing: Billing
) -> None:
    """Stripe answers "processing"; the bank's refusal comes later, only as the signed
    `payment_intent.payment_failed`: the attempt ends (a new top-up is possible again once
    the person turns it back on), auto top-up goes off, one email."""
    buyer = await crossing_with_a_processing_payment(world, stripe, db, billing)

    async def paid() -> list[AutoTopUpAttempt] | None:
        found = await attempts(db, buyer.user_id)
        return found if found and found[0].status == AttemptStatus.PAID else None

    [attempt] = await eventually(paid, seconds=WAIT, what="the processing payment noted")
    assert attempt.finished_at is None
    before = await balance(db, buyer.user_id)
    stripe.finish_processing(str(attempt.payment_intent_id), succeeded=False)

    [mail] = await eventually(
        lambda: world.inbox.to(buyer.email, "auto_top_up_failed"), seconds=WAIT, what="mail"
    )
    assert f"{world.portal_url}/billing/auto-top-up" in mail.get_content()
    [attempt] = await attempts(db, buyer.user_id)
    assert (attempt.status, attempt.error_code) == (AttemptStatus.FAILED, "card_declined")
    assert attempt.finished_at is not None
    async with db.session() as session:
        setting = await top_up_settings.get(session, buyer.user_id)
    assert setting is not None and not setting.enabled
    assert await balance(db, buyer.user_id) == before  # nothing granted
    assert await grants_for(db, str(attempt.payment_intent_id)) == 0

    # Stripe delivers the refusal again: no second email
    [event] = stripe.events_of("payment_intent.payment_failed", user_id=buyer.user_id)
    again = stripe.redeliver(event["id"])
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    await _barrier(world, db)
    assert len(world.inbox.to(buyer.email, "auto_top_up_failed")) == 1

    # switched on again, the next crossing starts a new attempt (none is left in flight)
    stripe.set_off_session_outcome(buyer.customer, "succeed")
    assert (await choose_auto_top_up(world, buyer)).status_code == 303
    await eventually(
        lambda: _succeeded(db, buyer.user_id), seconds=WAIT, what="a second attempt credited"
    )


async def _succeeded(db: Database, user_id: str) -> bool:
    return any(a.status == AttemptStatus.SUCCEEDED for a in await attempts(db, user_id))


async def test_a_processing_payment_is_credited_when_the_bank_pays(
    world: World, stripe: FakeStripe, db: Database, billing: Billing
) -> None:
    buyer = await crossing_with_a_processing_payment(world, stripe, db, billing)
    [intent] = await eventually(
        lambda: intents_of(stripe, buyer.user_id), seconds=WAIT, what="the payment started"
    )
    before = await balance(db, buyer.user_id)
    assert await grants_for(db, intent["id"]) == 0  # not while it is processing
    stripe.finish_processing(intent["id"], succeeded=True)
    [attempt] = await eventually(
        lambda: _finished(db, buyer.user_id), seconds=WAIT, what="the top-up credited"
    )
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert await balance(db, buyer.user_id) == before + AMOUNT * UNITS
    assert world.inbox.to(buyer.email, "auto_top_up_failed") == []
    stripe.off_session_outcomes.pop(buyer.customer)


async def test_no_low_balance_email_when_an_auto_top_up_refills_the_balance(
    world: World, stripe: FakeStripe, db: Database, billing: Billing
) -> None:
    """One call takes the balance below both the operator's low-balance threshold and
    the person's auto top-up threshold: the top-up starts, and "running low" is not sent."""
    buyer = await buyer_with_saved_card(world, db, billing)
    chosen = await choose_auto_top_up(world, buyer, threshold=str(LOW_BALANCE))
    assert chosen.status_code == 303, chosen.text
    await set_balance(db, buyer.user_id, LOW_BALANCE * UNITS + 1)
    await call(world, buyer)
    await eventually(
        lambda: _succeeded(db, buyer.user_id), seconds=WAIT, what="the top-up credited"
    )
    await _barrier(world, db)
    assert world.inbox.to(buyer.email, "low_balance") == []


async def _barrier(world: World, db: Database) -> None:
    """Wait until the portal has handled every alert written so far: alerts are taken in
    order, so a later crossing's email means the earlier ones are done."""
    other = await person(db, LOW_BALANCE * UNITS + 1)
    await call(world, other)
    await eventually(
        lambda: world.inbox.to(other.email, "low_balance"), seconds=WAIT, what="barrier mail"
    )


async def test_the_low_balance_email_follows_the_crossing_call_once(
    world: World, stripe: FakeStripe, db: Database
) -> None:
    someone = await person(db, LOW_BALANCE * UNITS + 1)
    assert (await credits(world, someone))["low_balance"] is False
    await call(world, someone)
    [mail] = await eventually(
        lambda: world.inbox.to(someone.email, "low_balance"), seconds=WAIT, what="low balance"
    )
    assert "Your balance is down to" in mail.get_content()
    assert (await credits(world, someone))["low_balance"] is True

    await call(world, someone)  # still below: no second email
    await _barrier(world, db)
    assert len(world.inbox.to(someone.email, "low_balance")) == 1

    await set_balance(db, someone.user_id, LOW_BALANCE * UNITS + 1)  # topped up...
    assert (await credits(world, someone))["low_balance"] is False
    await call(world, someone)  # ...and below again: a new crossing, a new email
    await eventually(
        lambda: len(world.inbox.to(someone.email, "low_balance")) == 2, seconds=WAIT, what="2nd"
    )


async def test_choices_outside_the_operators_bounds_are_refused(
    world: World, stripe: FakeStripe, db: Database
) -> None:
    someone = await person(db, 10 * UNITS)
    for form, says in (
        ({"threshold": "0"}, "threshold must be between 1 and 50"),
        ({"threshold": "51"}, "threshold must be between 1 and 50"),
        ({"amount": "4"}, "amount must be between 5 and 100"),
        ({"amount": "101"}, "amount must be between 5 and 100"),
        ({"amount": "7.5"}, "whole number of credits"),
    ):
        refused = await choose_auto_top_up(world, someone, **form)
        assert refused.status_code == 400 and says in refused.text, form
    async with db.session() as session:
        assert await top_up_settings.get(session, someone.user_id) is None


@pytest.mark.browser
async def test_auto_top_up_is_set_in_the_portal_and_shows_its_last_attempt(
    chromium: object,
    world: World,
    stripe: FakeStripe,
    db: Database,
    billing: Billing,
    request: pytest.FixtureRequest,
) -> None:
    """In Chromium: the Billing page's link, the settings form, then a call through the
    gateway crosses the threshold and the page shows the top-up paid and credited."""
    from tests.browser.conftest import SCREENSHOTS

    shots = SCREENSHOTS / f"auto-top-up-{request.node.callspec.id}"
    shots.mkdir(parents=True, exist_ok=True)
    buyer = await buyer_with_saved_card(world, db, billing)
    context = await chromium.new_context(base_url=world.portal_url)  # type: ignore[attr-defined]
    page = await context.new_page()
    await sign_in_with_chromium(page, buyer.email)

    await page.goto("/billing")
    assert "Off." in await page.text_content("#auto-top-up-state")
    await page.click("#auto-top-up-link")
    await page.wait_for_url("**/billing/auto-top-up")
    assert "None yet." in await page.text_content("#auto-top-up-last")
    await page.check("#auto-top-up-enabled")
    await page.fill("#auto-top-up-threshold", str(THRESHOLD))
    await page.fill("#auto-top-up-amount", str(AMOUNT))
    await page.screenshot(path=str(shots / "01-settings.png"), full_page=True)
    await page.click("#auto-top-up-save")
    await page.wait_for_url("**/billing/auto-top-up?saved=1")
    assert await page.is_checked("#auto-top-up-enabled")
    await page.goto("/billing")
    assert "below 5 credits we buy 5" in await page.text_content("#auto-top-up-state")

    await set_balance(db, buyer.user_id, THRESHOLD * UNITS + 1)
    await call(world, buyer)
    await eventually(lambda: _finished(db, buyer.user_id), seconds=WAIT, what="credited")
    await page.goto("/billing/auto-top-up")
    result = page.locator("#last-attempt-result")
    assert await result.get_attribute("data-status") == "succeeded"
    assert "Paid and credited" in await result.text_content()
    assert (await page.text_content("#last-attempt-credits")).strip() == str(AMOUNT)
    await page.screenshot(path=str(shots / "02-credited.png"), full_page=True)
    await context.close()
