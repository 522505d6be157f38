"""Tokens page (creating and revoking: test_token_actions.py), usage and credits pages,
the "what we keep" panel and the JSON API."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from portal.billing.runtime import Billing
from portal.config.billing_settings import BillingSettings
from portal.credits import alerts
from portal.db import Database
from portal.db.base import utcnow
from portal.email.messages import Mail
from portal.jobs.balance_alerts import AlertJob
from portal.tokens.service import authenticate
from portal.usage.models import UsageRecord
from tests.portal.conftest import SignedInUser
from tests.portal.support import add_usage, grant


async def test_revoking_a_token_takes_effect_at_once(signed_in: SignedInUser, db: Database) -> None:
    browser, _user_id, _email = await signed_in()
    created = (await browser.api("POST", "/api/tokens", json={"name": "ci"})).json()
    revoked = await browser.post(f"/tokens/{created['token']['id']}/revoke", {"confirm": "yes"})
    assert revoked.status_code == 303 and "token_revoked" in revoked.headers["location"]
    async with db.session() as session:
        try:
            await authenticate(session, created["secret"])
        except Exception as refused:
            assert type(refused).__name__ == "TokenRevoked"
        else:
            raise AssertionError("a revoked token still authenticates")
    assert "revoked" in (await browser.get("/tokens")).text


async def test_token_name_problems_are_explained(signed_in: SignedInUser) -> None:
    browser, _id, _email = await signed_in()
    for name, status in (("", 400), ("   ", 400), ("x" * 101, 400), ("Łódź ✓ 東京", 303)):
        page = await browser.post("/tokens", {"name": name})
        assert page.status_code == status, name
        if status == 400:
            assert 'class="error"' in page.text


async def test_dashboard_shows_balance_ledger_chart_and_what_we_keep(
    signed_in: SignedInUser, db: Database
) -> None:
    browser, user_id, _email = await signed_in()
    await grant(db, user_id, "5")
    call_id = await add_usage(db, user_id, credits=250_000_000, prompt_tokens=321)
    page = (await browser.get("/dashboard")).text
    assert "4.75" in page  # 5 - 0.25 credits
    assert "test grant" in page and 'class="usage-day"' in page  # usage: one line a day
    today = datetime.now(UTC).date().isoformat()
    assert re.search(rf'data-day="{today}" data-requests="1"', page)
    keep = page[page.index('id="what-we-keep"') :]
    for column in UsageRecord.__table__.columns:
        assert f"<th>{column.name}</th>" in keep
    assert call_id in keep and "321" in keep
    assert "Not among them" in keep


async def test_usage_table_pages_and_filters_by_date(signed_in: SignedInUser, db: Database) -> None:
    browser, user_id, _email = await signed_in()
    now = utcnow()
    old = await add_usage(db, user_id, when=now - timedelta(days=40))
    recent = [await add_usage(db, user_id, when=now - timedelta(minutes=i)) for i in range(51)]
    first = (await browser.get("/usage")).text
    assert "52 requests" in first and "page 1 of 2" in first
    assert recent[0] in first and old not in first  # newest first
    second = (await browser.get("/usage?page=2")).text
    assert old in second
    day = (now - timedelta(days=40)).date().isoformat()
    filtered = (await browser.get(f"/usage?from={day}&to={day}")).text
    assert "1 request in this range" in filtered and old in filtered
    bad = await browser.get("/usage?from=yesterday")
    assert bad.status_code == 400 and "Dates look like" in bad.text
    api = (await browser.get(f"/api/usage?from={day}&to={day}")).json()
    assert api["total"] == 1 and api["items"][0]["call_id"] == old


async def test_api_gives_the_dashboard_data(signed_in: SignedInUser, db: Database) -> None:
    browser, user_id, email = await signed_in()
    await grant(db, user_id, "2")
    call_id = await add_usage(db, user_id, credits=10**9)
    me = (await browser.get("/api/me")).json()
    assert me["email"] == email and me["email_verified"] is True
    assert "password_hash" not in me
    assert (await browser.get("/api/credits")).json()["balance_credits"] == "1"
    ledger = (await browser.get("/api/ledger")).json()
    assert [entry["kind"] for entry in ledger] == ["debit", "grant"]
    daily = (await browser.get("/api/usage/daily?days=7")).json()
    assert len(daily) == 7 and daily[-1]["requests"] == 1
    latest = (await browser.get("/api/usage/latest")).json()
    assert latest["fields"]["call_id"] == call_id and "not among" in latest["not_stored"]
    tokens = (await browser.api("POST", "/api/tokens", json={"name": "api"})).json()
    assert tokens["secret"].startswith("wfg_") and tokens["base_url"].endswith("/v1")
    listed = (await browser.get("/api/tokens")).json()
    assert "token_hash" not in listed[0] and "secret" not in listed[0]
    gone = await browser.api("DELETE", f"/api/tokens/{tokens['token']['id']}")
    assert gone.status_code == 200 and gone.json()["revoked_at"]
    schema = (await browser.get("/api/openapi.json")).json()
    for path in ("/api/me", "/api/tokens", "/api/usage", "/api/usage/daily", "/api/export"):
        assert path in schema["paths"]


async def test_low_balance_notice_is_sent_once_per_crossing(
    signed_in: SignedInUser, db: Database
) -> None:
    """The settlement that crosses the threshold writes the alert; the portal's job turns
    it into one email. Staying below crosses nothing; a top-up and a new fall cross again."""
    _browser, user_id, _email = await signed_in()
    await grant(db, user_id, "1.5")
    alerts.set_low_balance_threshold(10**9)
    sent: list[Mail] = []

    class Capture:
        async def send(self, mails: list[Mail]) -> None:
            sent.extend(mails)

    job = AlertJob(db, Capture(), lambda: Billing(BillingSettings(), "http://x"), "/d")  # type: ignore[arg-type]

    async def due() -> list[str]:
        sent.clear()
        await job.drain()
        return [m.kind for m in sent]

    await add_usage(db, user_id, credits=100_000_000)  # 1.4: above
    assert await due() == []
    await add_usage(db, user_id, credits=700_000_000)  # 0.7: crossed
    assert await due() == ["low_balance"] and "0.7 credits" in sent[0].text
    await add_usage(db, user_id, credits=100_000_000)  # 0.6: still below, no crossing
    assert await due() == []
    await grant(db, user_id, "1")
    await add_usage(db, user_id, credits=700_000_000)  # 1.6 -> 0.9: a new crossing
    assert await due() == ["low_balance"]
