"""After an account is deleted through the portal, nothing under `var/` names the person:
not the SQLite database, its write-ahead log, the mail outbox, or the usage spool.

The portal runs on the embedded defaults (SQLite in `var/`, mail to `var/outbox/`) and
the database stays open while every byte under `var/` is read, as in a running server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from portal.db import Database, open_database
from portal.db.base import utcnow
from portal.db.migrate import upgrade
from portal.settings import Settings
from portal.usage.settlement import FinishedCall
from portal.usage.spool import Spool
from portal.web.app import create_app
from tests.fixtures.gateway import free_port
from tests.portal.support import Browser, Outbox, add_usage

NAME = "Philippa Wrenbrook-Oyelaran"
TOKEN_NAMES = ("quokka-workstation", "marmoset-build-box")


@dataclass
class Portal:
    settings: Settings
    database: Database
    browser: Browser


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The embedded defaults: SQLite at var/workforce.db, mail to var/outbox/."""
    settings = Settings.from_env(
        {"WFG_VAR_DIR": str(tmp_path / "var"), "PORTAL_PUBLIC_URL": "http://localhost:8080"}
    )
    assert settings.database_url == f"sqlite:///{settings.var_dir / 'workforce.db'}"
    upgrade(settings.database_url)
    return settings


@pytest.fixture
async def portal(settings: Settings) -> AsyncIterator[Portal]:
    database = open_database(settings.database_url)
    app = create_app(settings, database=database, background_jobs=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost:8080"
    ) as client:
        yield Portal(settings, database, Browser(client))
    await database.dispose()


async def sign_up_and_use(portal: Portal, email: str) -> dict[str, str]:
    """Sign up, verify, create tokens, use them, ask for an email change: every place the
    person can leave a trace. Returns the account-deletion form."""
    browser, password = portal.browser, f"Tallow quince {uuid.uuid4().hex}"
    assert (await browser.sign_up(email, name=NAME, password=password)).status_code == 200
    outbox = Outbox(portal.settings.outbox_dir)
    await browser.get(outbox.last(email, "verify_email").link())
    assert (await browser.sign_in(email, password)).status_code == 303
    for name in TOKEN_NAMES:
        created = await browser.api("POST", "/api/tokens", json={"name": name})
        assert created.status_code == 201, created.text
    moved = await browser.post(
        "/account/email", {"new_email": f"new-{email}", "password": password}, page="/account"
    )
    assert moved.status_code == 303, moved.text
    user_id = (await browser.api("GET", "/api/me")).json()["id"]
    token_id = (await browser.api("GET", "/api/tokens")).json()[0]["id"]
    await add_usage(portal.database, user_id, token_id=token_id)
    # a settlement the gateway could not write yet waits in the spool
    now = utcnow()
    Spool(portal.settings.spool_dir).append(
        FinishedCall(
            call_id=f"call-{uuid.uuid4().hex}", user_id=user_id, token_id=token_id,
            model="gpt-4.1-nano", status="success", started_at=now, ended_at=now,
            prompt_tokens=3, completion_tokens=2, credits=5, http_status=200,
        )
    )  # fmt: skip
    return {"password": password, "confirm": "yes"}


def traces(var_dir: Path, needles: list[str]) -> dict[str, list[str]]:
    """needle -> files under `var_dir` whose bytes contain it (any case, UTF-8 or UTF-16)."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in var_dir.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        for needle in needles:
            forms = {needle.lower().encode(), needle.lower().encode("utf-16-le")}
            if any(form in data for form in forms):
                found.setdefault(needle, []).append(str(path.relative_to(var_dir)))
    return found


async def test_deleting_an_account_leaves_no_trace_of_the_person_under_var(
    portal: Portal,
) -> None:
    email = f"wrenbrook-{uuid.uuid4().hex[:8]}@example.com"
    delete_form = await sign_up_and_use(portal, email)
    var_dir = portal.settings.var_dir
    needles = [email, f"new-{email}", NAME, *TOKEN_NAMES]
    before = traces(var_dir, needles)
    assert set(before) == set(needles), before  # the search does see them while they live
    assert any(f.startswith("outbox/") for f in before[NAME])
    assert (var_dir / "spool").is_dir() and any((var_dir / "spool").iterdir())

    deleted = await portal.browser.post("/account/delete", delete_form, page="/account")
    assert deleted.status_code == 200 and "deleted" in deleted.text

    # the database is still open, as in a running portal
    files = {str(p.relative_to(var_dir)) for p in var_dir.rglob("*") if p.is_file()}
    assert "workforce.db" in files
    assert traces(var_dir, needles) == {}


async def test_other_peoples_mail_stays_in_the_outbox(portal: Portal) -> None:
    leaving = f"leaving-{uuid.uuid4().hex[:8]}@example.com"
    staying = f"staying-{uuid.uuid4().hex[:8]}@example.com"
    await portal.browser.sign_up(staying, name="Stays Here", password=f"Pw {uuid.uuid4().hex}")
    delete_form = await sign_up_and_use(portal, leaving)
    await portal.browser.post("/account/delete", delete_form, page="/account")
    outbox = Outbox(portal.settings.outbox_dir)
    assert [m.kind for m in outbox.all()] == ["verify_email"]
    assert outbox.last(staying).kind == "verify_email"


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


async def test_with_smtp_the_person_still_gets_the_confirmation(portal: Portal) -> None:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        email = f"smtp-{uuid.uuid4().hex[:8]}@example.com"
        delete_form = await sign_up_and_use(portal, email)  # mail so far: the outbox
        settings = portal.settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"})
        app = create_app(settings, database=portal.database, background_jobs=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost:8080"
        ) as client:
            browser = Browser(client)
            client.cookies = portal.browser.client.cookies
            done = await browser.post("/account/delete", delete_form, page="/account")
        assert done.status_code == 200
    finally:
        controller.stop()
    assert [m["X-WFG-Kind"] for m in inbox.messages] == ["account_deleted"]
    assert inbox.messages[0]["To"] == email
