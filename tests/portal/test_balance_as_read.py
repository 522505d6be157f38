"""The balance as a person reads it: at most 4 significant decimals on pages (exact in the
API, the export and the CSV), dollars beside credits where the operator set a rate, the
ledger's usage summed per day, the usage page's token column, totals and CSV download,
and the operator's words on getting credits where nothing can be bought."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from portal.accounts.service import create_user
from portal.credits import ledger
from portal.credits.models import CauseType, EntryKind, LedgerEntry
from portal.db import Database
from portal.db.base import utcnow
from portal.settings import PROJECT_ROOT, Settings
from portal.web.app import create_app
from tests.portal.conftest import PORTAL_URL, SignedInUser
from tests.portal.support import PASSWORD, Browser, add_usage, grant

ConfiguredBrowser = Callable[[Callable[[str], str]], Awaitable[tuple[Browser, str]]]


@pytest.fixture
async def configured(
    tmp_path: Path, portal_settings: Settings, db: Database
) -> AsyncIterator[ConfiguredBrowser]:
    """A signed-in browser on a portal whose config.yaml is the project's, edited."""
    clients: list[httpx.AsyncClient] = []

    async def make(edit: Callable[[str], str]) -> tuple[Browser, str]:
        config = tmp_path / f"config-{len(clients)}.yaml"
        config.write_text(edit((PROJECT_ROOT / "config.yaml").read_text("utf-8")), "utf-8")
        app = create_app(
            portal_settings.model_copy(update={"config_path": config}),
            database=db,
            background_jobs=False,
        )
        email = f"reader-{len(clients)}-{utcnow().timestamp()}@example.com"
        async with db.transaction() as session:
            user = await create_user(
                session, email=email, name="R", password=PASSWORD, verified=True
            )
            await ledger.ensure_account(session, user.id)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PORTAL_URL)
        clients.append(client)
        browser = Browser(client)
        assert (await browser.sign_in(email)).status_code == 303
        return browser, user.id

    yield make
    for client in clients:
        await client.aclose()


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_pages_round_to_4_significant_decimals_the_api_stays_exact(
    signed_in: SignedInUser, db: Database
) -> None:
    browser, user_id, _email = await signed_in()
    await grant(db, user_id, "1.234567891")
    await add_usage(db, user_id, credits=42_123)  # 0.000042123 credits
    dashboard = _text((await browser.get("/dashboard")).text)
    assert "1.2345 credits" in dashboard  # 1.234567891 - 0.000042123 = 1.234525768
    assert "1.234525768" not in dashboard.replace('title="1.234525768', "")
    assert "-0.00004212" in dashboard and "-0.000042123 " not in dashboard
    usage = (await browser.get("/usage")).text
    assert ">0.00004212<" in usage and 'title="0.000042123 credits"' in usage
    api = (await browser.get("/api/credits")).json()
    assert api["balance_credits"] == "1.234525768"
    export = (await browser.get("/api/export")).json()
    assert {"amount_credits": "-0.000042123"}.items() <= export["tables"]["ledger_entries"][
        -1
    ].items()


async def test_dollars_are_shown_only_where_the_operator_set_a_rate(
    configured: ConfiguredBrowser, db: Database
) -> None:
    half, half_id = await configured(
        lambda text: text.replace("usd_per_credit: 1 ", "usd_per_credit: 0.5 ")
    )
    await grant(db, half_id, "12.5")
    assert "worth $6.25" in _text((await half.get("/dashboard")).text)
    assert "worth $6.25" in _text((await half.get("/billing")).text)

    unset, unset_id = await configured(lambda text: re.sub(r"\n +usd_per_credit:[^\n]*", "", text))
    await grant(db, unset_id, "12.5")
    page = (await unset.get("/dashboard")).text
    assert "12.5" in page and "$" not in _text(page)


async def test_the_ledger_sums_usage_per_day_and_keeps_other_entries_alone(
    signed_in: SignedInUser, db: Database
) -> None:
    browser, user_id, _email = await signed_in()
    await grant(db, user_id, "5")
    yesterday = [await add_usage(db, user_id, credits=1_000_000) for _ in range(2)]
    async with db.transaction() as session:  # settled yesterday (UTC)
        await session.execute(
            update(LedgerEntry)
            .where(LedgerEntry.cause_id.in_(yesterday))
            .values(created_at=utcnow() - timedelta(days=1))
        )
    for _ in range(3):
        await add_usage(db, user_id, credits=2_000_000)
    async with db.transaction() as session:
        await ledger.post_entry(
            session, user_id=user_id, amount=-500_000_000, kind=EntryKind.CLAWBACK,
            cause_type=CauseType.STRIPE_EVENT, cause_id="evt_refund_1", note="refund",
        )  # fmt: skip

    html = (await browser.get("/dashboard")).text
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", html[html.index('id="ledger"') :], re.DOTALL)
    lines = [_text(row).strip() for row in rows[1:]]  # without the header
    today, before = utcnow().date(), (utcnow() - timedelta(days=1)).date()
    assert len(lines) == 4, lines
    assert lines[0].split()[3:5] == ["clawback", "-0.5"]  # "2026-12-07 10:00 UTC clawback"
    assert lines[1].startswith(f"{today} usage -0.006") and "3 requests" in lines[1]
    assert lines[2].startswith(f"{before} usage -0.002") and "2 requests" in lines[2]
    assert lines[3].split()[3:5] == ["grant", "5"]
    assert len((await browser.get("/api/ledger")).json()) == 7  # the API lists every entry


async def test_usage_page_has_tokens_totals_and_a_csv_of_the_range(
    signed_in: SignedInUser, db: Database
) -> None:
    browser, user_id, _email = await signed_in()
    laptop = (await browser.api("POST", "/api/tokens", json={"name": "Laptop"})).json()
    ci = (await browser.api("POST", "/api/tokens", json={"name": "CI runner"})).json()
    now = utcnow()
    calls = [
        await add_usage(db, user_id, token_id=laptop["token"]["id"], model="gpt-4.1-nano",
                        credits=1_000_000, prompt_tokens=10, completion_tokens=1),
        await add_usage(db, user_id, token_id=laptop["token"]["id"], model="claude-haiku",
                        credits=3_000_000, prompt_tokens=20, completion_tokens=2),
        await add_usage(db, user_id, token_id=ci["token"]["id"], model="gpt-4.1-nano",
                        credits=42_123, prompt_tokens=30, completion_tokens=3),
    ]  # fmt: skip
    old = await add_usage(db, user_id, token_id=ci["token"]["id"], when=now - timedelta(days=40))
    day = now.date().isoformat()

    page = (await browser.get(f"/usage?from={day}&to={day}")).text
    row = page.split(f'data-call-id="{calls[2]}"')[1].split("</tr>")[0]
    assert "CI runner" in row
    by_model = _text(page.split('id="totals-by-model"')[1].split("</table>")[0])
    assert "claude-haiku 1 20 2 0.003" in by_model and "gpt-4.1-nano 2 40 4 0.001042" in by_model
    by_token = _text(page.split('id="totals-by-token"')[1].split("</table>")[0])
    assert "Laptop 2 30 3 0.004" in by_token and "CI runner 1 30 3 0.00004212" in by_token
    assert f'href="/usage.csv?from={day}&amp;to={day}"' in page

    download = await browser.get(f"/usage.csv?from={day}&to={day}")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(download.text)))
    assert [r["call_id"] for r in table] == calls  # oldest first, the range only
    assert old not in download.text
    assert (table[2]["token"], table[2]["credits"], table[2]["credits_units"]) == (
        "CI runner", "0.000042123", "42123",
    )  # fmt: skip


async def test_without_stripe_the_billing_page_gives_the_operators_words(
    configured: ConfiguredBrowser,
) -> None:
    words = "Credits are granted by the IT desk.\nWrite to it@example.com with your team name."
    listed = f"how_to_get_credits: {json.dumps(words)}"  # a YAML string
    browser, _user_id = await configured(
        lambda text: text.replace('how_to_get_credits: ""', listed, 1)
    )
    billing = (await browser.get("/billing")).text
    section = billing[billing.index('id="how-to-get-credits"') :]
    assert "Credits are granted by the IT desk.\nWrite to it@example.com" in section
    dashboard = (await browser.get("/dashboard")).text  # balance 0: the next step says it too
    assert "Write to it@example.com" in dashboard[dashboard.index('id="get-credits"') :]
