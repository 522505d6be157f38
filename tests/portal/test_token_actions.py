"""Token create and revoke: one flow behind the page and the API. Creating redirects after
POST and shows the secret once on the next page (kept server-side, never in a URL);
revoking asks first, and drops the token from every gateway's auth cache after commit."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.credits.units import UNITS_PER_CREDIT
from portal.db import Database
from portal.sessions.flash import take_flash
from portal.sessions.models import WebSession
from portal.tokens.models import GatewayToken
from portal.tokens.service import authenticate
from tests.portal.conftest import SignedInUser
from tests.portal.support import Outbox

_SECRET = re.compile(r'<code id="token-value">([^<]+)</code>')


async def test_creating_a_token_redirects_and_shows_it_once(
    signed_in: SignedInUser, db: Database, outbox: Outbox
) -> None:
    browser, _user_id, email = await signed_in()
    posted = await browser.post("/tokens", {"name": "Work laptop"})
    assert posted.status_code == 303 and posted.headers["location"] == "/tokens"
    page = await browser.get("/tokens")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    secret = _SECRET.search(page.text).group(1)
    assert "Work laptop" in page.text
    assert '<code id="base-url">http://localhost:4000/v1</code>' in page.text
    assert secret not in str(posted.headers) and secret not in str(page.url)
    async with db.session() as session:
        row = await session.scalar(select(GatewayToken))
        assert (await authenticate(session, secret)).token_id == row.id
        kept = await session.scalar(select(WebSession.flash_sealed))
    assert kept is None  # read once, then gone
    again = await browser.get("/tokens")  # a refresh neither resubmits nor shows it again
    assert secret not in again.text and row.prefix in again.text
    async with db.session() as session:
        assert len((await session.scalars(select(GatewayToken))).all()) == 1
    mail = outbox.last(email, "token_created")
    assert "Work laptop" in mail.text and secret not in mail.text


async def test_the_kept_secret_is_sealed_and_only_this_browser_can_read_it(
    signed_in: SignedInUser, db: Database
) -> None:
    browser, _user_id, _email = await signed_in()
    await browser.post("/tokens", {"name": "laptop"})
    async with db.session() as session:
        session_id, sealed = (
            await session.execute(select(WebSession.id, WebSession.flash_sealed))
        ).one()
    assert sealed and "wfg_" not in sealed  # the database holds no readable secret
    async with db.transaction() as session:  # a reader without this browser's cookie
        assert await take_flash(session, session_id=session_id, cookie_secret="guess") is None
    async with db.session() as session:
        assert await session.scalar(select(WebSession.flash_sealed)) is None  # spent anyway
    assert "token-value" not in (await browser.get("/tokens")).text


async def test_revoking_asks_first_on_the_page(signed_in: SignedInUser, db: Database) -> None:
    browser, _user_id, _email = await signed_in()
    created = (await browser.api("POST", "/api/tokens", json={"name": "ci box"})).json()
    token_id = created["token"]["id"]
    listing = await browser.get("/tokens")
    assert f'href="/tokens/{token_id}/revoke"' in listing.text  # a link, not a one-click form
    one_click = await browser.post(f"/tokens/{token_id}/revoke")  # no confirmation
    assert one_click.status_code == 200 and "Revoke “ci box”?" in one_click.text
    confirm = await browser.get(f"/tokens/{token_id}/revoke")
    assert 'name="confirm" value="yes"' in confirm.text
    async with db.session() as session:
        assert (await authenticate(session, created["secret"])).token_id == token_id
    done = await browser.post(f"/tokens/{token_id}/revoke", {"confirm": "yes"})
    assert done.status_code == 303 and "token_revoked" in done.headers["location"]
    async with db.session() as session:
        assert (await session.get(GatewayToken, token_id)).revoked_at is not None
    gone = await browser.get(f"/tokens/{token_id}/revoke")  # already revoked: nothing to ask
    assert gone.status_code == 303


async def test_the_api_sets_changes_and_removes_a_tokens_spending_limit(
    signed_in: SignedInUser, db: Database
) -> None:
    """The desktop app's settings page (JSON API) does what the Tokens page does: a limit at
    creation, changed later, removed; a bad value is refused with the reason, and another
    person's token is not found."""
    browser, _user_id, _email = await signed_in()
    created = await browser.api(
        "POST", "/api/tokens", json={"name": "laptop", "limit": "5", "reset": "daily"}
    )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert (token["limit"], token["limit_units"], token["limit_reset"]) == (
        "5",
        5 * UNITS_PER_CREDIT,
        "daily",
    )
    path = f"/api/tokens/{token['id']}/limit"
    changed = await browser.api("PUT", path, json={"limit": "2.5", "reset": "monthly"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["limit"], changed.json()["limit_reset"]) == ("2.5", "monthly")
    async with db.session() as session:
        row = await session.get(GatewayToken, token["id"])
        assert (row.limit_units, row.limit_reset) == (5 * UNITS_PER_CREDIT // 2, "monthly")

    for bad, reason in (
        ({"limit": "-1"}, "more than 0"),
        ({"limit": "five"}, "number of credits"),
        ({"limit": "5", "reset": "hourly"}, "daily, weekly, monthly"),
    ):
        refused = await browser.api("PUT", path, json=bad)
        assert refused.status_code == 422 and reason in refused.json()["detail"], refused.text
    no_csrf = await browser.client.put(path, json={"limit": "1"})
    assert no_csrf.status_code == 403

    removed = await browser.api("PUT", path, json={"limit": None})
    assert removed.status_code == 200 and removed.json()["limit"] is None
    listed = (await browser.api("GET", "/api/tokens")).json()
    assert [(t["id"], t["limit"], t["limit_reset"]) for t in listed] == [(token["id"], None, None)]

    other, _other_id, _other_email = await signed_in(name="Someone Else")
    stolen = await other.api("PUT", path, json={"limit": "100"})
    assert stolen.status_code == 404
