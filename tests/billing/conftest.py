"""Billing fixtures: a fake Stripe and a real portal server (uvicorn, own thread) that
Stripe's webhooks reach over HTTP, per database backend.

`stripe_world` is started once per backend: the fake (with a catalog of prices), a
config.yaml naming those prices, and the portal pointed at both. Tests drive Stripe's
side with the fake's helpers (`complete_checkout`, `refund_charge`, ...), which deliver
the resulting events, signed, to the portal's `/stripe/webhook`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from sqlalchemy import func, select

from portal.accounts.service import create_user
from portal.billing import flows
from portal.billing.models import BillingAccount, StripeEvent
from portal.billing.runtime import Billing, build_billing
from portal.config import load_plugin_settings
from portal.credits import ledger
from portal.credits.models import LedgerEntry
from portal.db import Database
from portal.settings import PROJECT_ROOT, Settings
from portal.web.app import create_app
from tests.browser.conftest import chromium, chromium_path  # noqa: F401 (fixtures)
from tests.fakes.stripe_api import FakeStripe
from tests.fixtures.readiness import wait_until_ready
from tests.portal.support import PASSWORD, Browser

CATALOG = {
    "plans": {
        "basic": {"name": "Basic", "credits_per_period": 100, "trial_credits": 5, "amount": 1000},
        "pro": {
            "name": "Pro",
            "credits_per_period": 500,
            "free_period_credits": 20,
            "amount": 4000,
        },
    },
    "packs": {
        "small": {"name": "10 credits", "credits": 10, "amount": 1000},
    },
}
UNITS = 10**9


class PortalServer:
    """The portal app under uvicorn in a daemon thread, on its own event loop."""

    def __init__(self, settings_for: Callable[[str], Settings]) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.settings = settings_for(self.url)
        app = create_app(self.settings, background_jobs=False)
        config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none", http="h11")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True
        )
        self.thread.start()
        wait_until_ready(lambda: self.server.started, alive=self.thread.is_alive, what="the portal")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class StripeWorld:
    fake: FakeStripe
    portal: PortalServer
    settings: Settings
    prices: dict[str, str]  # catalog id -> Stripe price id

    @property
    def webhook_url(self) -> str:
        return f"{self.portal.url}/stripe/webhook"


def write_config(directory: Path, prices: dict[str, str]) -> Path:
    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text(encoding="utf-8"))
    billing: dict[str, dict] = {"plans": {}, "packs": {}}
    for kind in ("plans", "packs"):
        for item_id, item in CATALOG[kind].items():
            entry = {k: v for k, v in item.items() if k != "amount"}
            billing[kind][item_id] = {**entry, "stripe_price_id": prices[item_id]}
    config["workforce_gateway"]["billing"] = billing
    path = directory / "config-billing.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def stripe_world(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StripeWorld]:
    work = tmp_path_factory.mktemp("billing")
    fake = FakeStripe().start()
    prices = {
        plan_id: fake.create_price(
            unit_amount=item["amount"], recurring_interval="month", product_name=item["name"]
        )
        for plan_id, item in CATALOG["plans"].items()
    }
    prices |= {
        pack_id: fake.create_price(unit_amount=item["amount"], product_name=item["name"])
        for pack_id, item in CATALOG["packs"].items()
    }
    config_path = write_config(work, prices)

    def settings_for(url: str) -> Settings:
        return Settings.from_env(
            {
                "DATABASE_URL": database_url,
                "WFG_VAR_DIR": str(work / "var"),
                "WFG_CONFIG": str(config_path),
                "PORTAL_PUBLIC_URL": url,
                "STRIPE_SECRET_KEY": fake.secret_key,
                "STRIPE_WEBHOOK_SECRET": fake.webhook_secret,
                "STRIPE_API_BASE": fake.url,
            }
        )

    portal = PortalServer(settings_for)
    fake.webhook_url = f"{portal.url}/stripe/webhook"
    yield StripeWorld(fake=fake, portal=portal, settings=portal.settings, prices=prices)
    portal.stop()
    fake.stop()


@pytest.fixture
def stripe_fake(stripe_world: StripeWorld, db: Database) -> Iterator[FakeStripe]:
    """The fake, delivering to the portal; its failures fail the test."""
    fake = stripe_world.fake
    fake.auto_deliver = True
    fake.webhook_url = stripe_world.webhook_url
    fake.deliveries.clear()
    fake.errors.clear()
    yield fake
    fake.wait_for_deliveries()
    assert not fake.errors, fake.errors


@pytest.fixture
async def billing(stripe_world: StripeWorld) -> AsyncIterator[Billing]:
    """An in-process billing context on the same fake and catalog as the portal."""
    catalog = load_plugin_settings(stripe_world.settings.config_path).billing
    context = build_billing(stripe_world.settings, catalog)
    yield context
    await context.aclose()


@dataclass
class Buyer:
    user_id: str
    email: str


MakeBuyer = Callable[[], Awaitable[Buyer]]


@pytest.fixture
def make_buyer(db: Database) -> MakeBuyer:
    """A verified account with a password and no credits."""

    async def make() -> Buyer:
        email = f"buyer-{uuid.uuid4().hex[:10]}@example.com"
        async with db.transaction() as session:
            user = await create_user(
                session, email=email, name="Bea Buyer", password=PASSWORD, verified=True
            )
            await ledger.ensure_account(session, user.id)
        return Buyer(user.id, email)

    return make


async def start_checkout(billing: Billing, db: Database, buyer: Buyer, kind: str, item: str) -> str:
    """Start a Checkout as the Billing page does; the Checkout Session id."""
    url = await flows.start_checkout(
        db, billing, user_id=buyer.user_id, email=buyer.email, kind=kind, item_id=item
    )
    return url.rsplit("/", 1)[-1]


async def signed_in_browser(portal_url: str, email: str) -> Browser:
    client = httpx.AsyncClient(base_url=portal_url, timeout=30)
    browser = Browser(client)
    response = await browser.sign_in(email)
    assert response.status_code == 303, response.text
    return browser


# ------------------------------------------------------------- what was written
@dataclass
class Books:
    balance: int
    ledger_sum: int
    entries: list[LedgerEntry]
    account: BillingAccount | None
    events: int
    plan: str


async def books(db: Database, user_id: str) -> Books:
    from portal.accounts.models import User

    async with db.session() as session:
        entries = list(
            await session.scalars(
                select(LedgerEntry).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id)
            )
        )
        return Books(
            balance=await ledger.balance(session, user_id),
            ledger_sum=await ledger.ledger_sum(session, user_id),
            entries=entries,
            account=await session.get(BillingAccount, user_id),
            events=int(await session.scalar(select(func.count()).select_from(StripeEvent)) or 0),
            plan=(await session.get(User, user_id)).plan,
        )


def event_of(events: list[dict], type_: str) -> dict:
    found = [e for e in events if e["type"] == type_]
    assert len(found) == 1, [e["type"] for e in events]
    return found[0]
