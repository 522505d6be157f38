"""A newcomer's first hour: amounts read as credits wherever a person reads them (units
only under a name that says so), what to do while the balance is 0, the tab icon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portal.settings import Settings
from tests.portal.conftest import NewBrowser, SignedInUser
from tests.portal.support import Outbox, add_usage, grant


async def test_export_labels_every_amount_with_its_unit(
    signed_in: SignedInUser, db, outbox: Outbox
) -> None:
    browser, user_id, _email = await signed_in()
    await grant(db, user_id, "1")
    await add_usage(db, user_id, credits=42_000)
    document = json.loads((await browser.get("/account/export")).content)
    assert document["format"] == "workforce-gateway-export/2"
    assert document["units"]["units_per_credit"] == 10**9
    debit, grant_row = sorted(document["tables"]["ledger_entries"], key=lambda e: e["amount_units"])
    assert (debit["amount_units"], debit["amount_credits"]) == (-42_000, "-0.000042")
    assert (grant_row["amount_units"], grant_row["amount_credits"]) == (10**9, "1")
    usage = document["tables"]["usage_records"][0]
    assert (usage["charged_units"], usage["charged_credits"]) == (42_000, "0.000042")
    account = document["tables"]["credit_accounts"][0]
    assert account["balance_credits"] == "0.999958" and account["reserved_credits"] == "0"
    for rows in document["tables"].values():
        for row in rows:
            assert not {"amount", "credits", "balance", "reserved"} & row.keys(), row


async def test_pages_and_api_show_credits_not_bare_units(signed_in: SignedInUser, db) -> None:
    browser, user_id, _email = await signed_in()
    await grant(db, user_id, "1")
    await add_usage(db, user_id, credits=42_000)
    dashboard = (await browser.get("/dashboard")).text
    keep = dashboard[dashboard.index('id="what-we-keep"') : dashboard.index('id="ledger"')]
    assert "<th>credits</th><td>42000 units (0.000042 credits)</td>" in keep
    ledger_html = dashboard[dashboard.index('id="ledger"') :]
    assert "-0.000042" in ledger_html and "42000" not in ledger_html
    assert "0.000042" in (await browser.get("/usage")).text
    ledger = (await browser.get("/api/ledger")).json()
    assert ledger[0]["amount_units"] == -42_000 and ledger[0]["amount_credits"] == "-0.000042"
    assert "amount" not in ledger[0]
    item = (await browser.get("/api/usage")).json()["items"][0]
    assert (item["charged_units"], item["charged_credits"]) == (42_000, "0.000042")
    assert "credits" not in item
    day = (await browser.get("/api/usage/daily?days=1")).json()[0]
    assert (day["charged_units"], day["charged_credits"]) == (42_000, "0.000042")
    latest = (await browser.get("/api/usage/latest")).json()["fields"]
    assert latest["credits"] == "42000 units (0.000042 credits)"


async def test_dashboard_says_how_to_get_credits_while_the_balance_is_0(
    signed_in: SignedInUser, db
) -> None:
    browser, user_id, email = await signed_in()
    empty = (await browser.get("/dashboard")).text
    assert 'id="get-credits"' in empty and "402 Payment Required" in empty
    assert "an operator grants credits" in empty and email in empty
    assert "gateway-admin credits grant" in empty
    await grant(db, user_id, "1")
    assert 'id="get-credits"' not in (await browser.get("/dashboard")).text


@pytest.fixture
def portal_settings(tmp_path: Path, database_url: str, request: pytest.FixtureRequest) -> Settings:
    env = {
        "WFG_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": database_url,
        "PORTAL_PUBLIC_URL": "http://localhost:8080",
        "GATEWAY_PUBLIC_URL": "http://localhost:4000",
    }
    if "stripe" in request.node.name:
        env["STRIPE_SECRET_KEY"] = "sk_test_not_called_in_this_test"
    return Settings.from_env(env)


async def test_with_stripe_the_next_step_is_the_billing_page(signed_in: SignedInUser) -> None:
    browser, _user_id, _email = await signed_in()
    page = (await browser.get("/dashboard")).text
    steps = page[page.index('id="get-credits"') :]
    assert 'href="/billing"' in steps and "operator grants" not in steps


async def test_after_verification_the_page_says_what_to_do_next(
    new_browser: NewBrowser, outbox: Outbox
) -> None:
    browser = new_browser()
    email = "newcomer@example.com"
    assert (await browser.sign_up(email)).status_code in (200, 303)
    page = await browser.get(outbox.last(email, "verify_email").link())
    assert page.status_code == 200 and 'id="verified"' in page.text
    assert "tokens work from now on" not in page.text
    assert 'id="get-credits"' in page.text and "402 Payment Required" in page.text


async def test_the_tab_icon_is_served(new_browser: NewBrowser) -> None:
    browser = new_browser()
    icon = await browser.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/vnd.microsoft.icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert '<link rel="icon" href="/favicon.ico">' in (await browser.get("/signin")).text
