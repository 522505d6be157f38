"""Portal fixtures: the app on the test database, scripted browsers, the mail outbox."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from portal.accounts.service import create_user
from portal.credits import ledger
from portal.db import Database
from portal.settings import Settings
from portal.web.app import create_app
from tests.portal.support import PASSWORD, Browser, Outbox

PORTAL_URL = "http://localhost:8080"


@pytest.fixture
def portal_settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings.from_env(
        {
            "WFG_VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": database_url,
            "PORTAL_PUBLIC_URL": PORTAL_URL,
            "GATEWAY_PUBLIC_URL": "http://localhost:4000",
        }
    )


@pytest.fixture
def outbox(portal_settings: Settings) -> Outbox:
    return Outbox(portal_settings.outbox_dir)


@pytest.fixture
def app(db: Database, portal_settings: Settings) -> FastAPI:
    return create_app(portal_settings, database=db, background_jobs=False)


NewBrowser = Callable[..., Browser]
CLIENT_ADDRESS = "203.0.113.7"  # where every test browser connects from, unless told


@pytest.fixture
async def new_browser(app: FastAPI) -> AsyncIterator[NewBrowser]:
    clients: list[httpx.AsyncClient] = []

    def make(address: str = CLIENT_ADDRESS) -> Browser:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(address, 5000)),
            base_url=PORTAL_URL,
        )
        clients.append(client)
        return Browser(client)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def browser(new_browser: NewBrowser) -> Browser:
    return new_browser()


SignedInUser = Callable[..., Awaitable[tuple[Browser, str, str]]]


@pytest.fixture
def signed_in(db: Database, new_browser: NewBrowser) -> SignedInUser:
    """A verified account signed in in a fresh browser: (browser, user id, email)."""

    async def make(*, verified: bool = True, name: str = "Grace Hopper"):
        email = f"person-{uuid.uuid4().hex[:10]}@example.com"
        async with db.transaction() as session:
            user = await create_user(
                session, email=email, name=name, password=PASSWORD, verified=verified
            )
            await ledger.ensure_account(session, user.id)
        browser = new_browser()
        response = await browser.sign_in(email)
        assert response.status_code == 303, response.text
        return browser, user.id, email

    return make
