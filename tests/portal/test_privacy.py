"""Export has every user-linked column; deletion leaves nothing that identifies the person.

Both tests find "user-linked" from the schema (foreign keys to users.id, and every
column whose name mentions email), so a table added later is checked without editing
this file, and fails here until export and deletion cover it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import String, Text, func, select

from portal.accounts.throttle import account_key
from portal.credits import reservations
from portal.credits.units import format_units, unit_base_name
from portal.db import Database
from portal.db.base import utcnow
from portal.errors import InvalidToken
from portal.models import Base
from portal.tokens.service import authenticate
from tests.portal.conftest import NewBrowser, SignedInUser
from tests.portal.support import PASSWORD, Browser, Outbox, add_usage, exchange, grant, pkce

NAME = "Zebulon Quixote-Marchetti"


def user_linked_tables() -> dict[str, str]:
    """table name -> the column pointing at users.id, for every such table."""
    linked = {}
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table.name == "users":
                linked[table.name] = fk.parent.name
    return linked


async def populate(browser: Browser, db: Database, user_id: str, email: str) -> dict[str, str]:
    """Give the person a row in every table that can hold one; returns useful ids."""
    created = (await browser.api("POST", "/api/tokens", json={"name": "laptop"})).json()
    await grant(db, user_id, "3")
    call_id = await add_usage(db, user_id, token_id=created["token"]["id"])
    async with db.transaction() as session:
        await reservations.reserve(
            session, user_id=user_id, call_id="in-flight-1", amount=5, ttl_seconds=600
        )
    await browser.post("/verify/resend")  # an email log row; no link (already verified)
    await browser.post(
        "/account/email", {"new_email": "elsewhere@example.net", "password": PASSWORD}
    )
    await browser.post("/signin", {"email": email, "password": "wrong wrong"})  # a failure
    connected = await connect_an_app(browser)
    await fill_other_linked_tables(db, user_id)
    return {
        "token_id": created["token"]["id"],
        "secret": created["secret"],
        "call_id": call_id,
        "connected_token_id": connected["token_id"],
        "connected_secret": connected["access_token"],
    }


async def connect_an_app(browser: Browser) -> dict[str, str]:
    """Approve an app named after the person and exchange its code (a connect_codes row
    that names its app, callback and token)."""
    verifier, challenge = pkce()
    callback = "http://127.0.0.1:43210/for-zebulon"
    asked = {
        "callback_url": callback,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "app": f"{NAME}'s laptop",
    }
    path = "/connect?" + urlencode(asked)
    limit = {"limit": "2.5", "reset": "weekly"}  # the token's spending limit, on the code
    approved = await browser.post("/connect", {**asked, **limit, "decision": "approve"}, page=path)
    code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
    answer = await exchange(browser.client, code, verifier, callback)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def fill_other_linked_tables(db: Database, user_id: str) -> None:
    """A synthetic row in any user-linked table the flows above did not reach (tables
    added by other features, e.g. billing), with string values naming the person."""
    async with db.transaction() as session:
        for table_name, user_column in user_linked_tables().items():
            table = Base.metadata.tables[table_name]
            present = await session.scalar(
                select(func.count()).select_from(table).where(table.c[user_column] == user_id)
            )
            if present:
                continue
            values: dict[str, Any] = {}
            for column in table.columns:
                if column.name == user_column:
                    values[column.name] = user_id
                elif column.foreign_keys or (column.primary_key and column.autoincrement is True):
                    continue
                elif isinstance(column.type, String | Text):
                    length = getattr(column.type, "length", None) or 64
                    values[column.name] = f"{NAME} {uuid.uuid4().hex}"[:length]
                elif _is_datetime(column):
                    values[column.name] = utcnow()
                elif _python_type(column) is int:
                    values[column.name] = 1
                elif _python_type(column) is bool:
                    values[column.name] = False
            await session.execute(table.insert().values(**values))


def _python_type(column) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def _is_datetime(column) -> bool:
    return _python_type(column) is datetime


async def test_export_contains_every_user_linked_column(
    signed_in: SignedInUser, db: Database
) -> None:
    browser, user_id, email = await signed_in(name=NAME)
    ids = await populate(browser, db, user_id, email)
    response = await browser.get("/account/export")
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    document = json.loads(response.content)

    assert document["account"]["email"] == email and document["account"]["name"] == NAME
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if "email" in column.name and table.name != "users":
                assert table.name in user_linked_tables(), f"{table.name}.{column.name}"
    users = Base.metadata.tables["users"]
    for column in users.columns:
        assert column.name in document["account"] or f"users.{column.name}" in document["withheld"]

    for table_name, user_column in user_linked_tables().items():
        table = Base.metadata.tables[table_name]
        async with db.session() as session:
            rows = (
                (
                    await session.execute(
                        select(table)
                        .where(table.c[user_column] == user_id)
                        .order_by(*table.primary_key)  # as the export orders them
                    )
                )
                .mappings()
                .all()
            )
        assert rows, f"test fixture: give the person a row in {table_name} (populate())"
        exported = document["tables"].get(table_name)
        assert exported is not None, f"export misses table {table_name}"
        assert len(exported) == len(rows), table_name
        for column in table.columns:
            key = f"{table_name}.{column.name}"
            if key in document["withheld"]:
                assert column.name.endswith("_hash"), f"{key} withheld but is not a digest"
                assert all(column.name not in row for row in exported)
                continue
            base = unit_base_name(column.info)
            for row, exported_row in zip(rows, exported, strict=True):
                if base is not None:  # ledger units: labelled, never a bare number
                    assert column.name not in exported_row or column.name == f"{base}_units"
                    assert exported_row[f"{base}_units"] == row[column.name], key
                    stored = row[column.name]
                    credits = None if stored is None else format_units(stored)
                    assert exported_row[f"{base}_credits"] == credits, key
                    continue
                assert column.name in exported_row, f"export misses {key}"
                assert _same(row[column.name], exported_row[column.name]), key
    assert document["tables"]["throttle_counters"], "failed sign-ins of this address"
    assert ids["call_id"] in response.text
    assert ids["secret"] not in response.text
    assert "password_hash" not in json.dumps(document["account"])


def _same(stored: Any, exported: Any) -> bool:
    if hasattr(stored, "isoformat"):
        return stored.isoformat() == exported
    return stored == exported


async def test_export_of_the_api_matches_the_page(signed_in: SignedInUser) -> None:
    browser, _id, email = await signed_in()
    api = (await browser.get("/api/export")).json()
    page = json.loads((await browser.get("/account/export")).content)
    assert api["account"] == page["account"] and api["account"]["email"] == email


async def test_deletion_needs_the_password(signed_in: SignedInUser, db: Database) -> None:
    browser, _user_id, _email = await signed_in()
    wrong = await browser.post("/account/delete", {"password": "not my password", "confirm": "yes"})
    assert wrong.status_code == 400 and "not deleted" in wrong.text
    unticked = await browser.post("/account/delete", {"password": PASSWORD})
    assert unticked.status_code == 400
    assert await browser.signed_in()


async def test_deletion_leaves_nothing_that_identifies_the_person(
    signed_in: SignedInUser, new_browser: NewBrowser, db: Database, outbox: Outbox
) -> None:
    browser, user_id, email = await signed_in(name=NAME)
    ids = await populate(browser, db, user_id, email)
    elsewhere = new_browser()
    await elsewhere.sign_in(email)
    async with db.session() as session:
        kept_usage = await _count(session, "usage_records")
        kept_ledger = await _count(session, "ledger_entries")

    done = await browser.post("/account/delete", {"password": PASSWORD, "confirm": "yes"})
    assert done.status_code == 200 and "deleted" in done.text

    identifying = {
        user_id,
        email,
        NAME,
        account_key(email),
        ids["token_id"],
        ids["connected_token_id"],
        "elsewhere@example.net",
    }
    async with db.session() as session:
        for table in Base.metadata.sorted_tables:
            rows = (await session.execute(select(table))).mappings().all()
            for row in rows:
                for column in table.columns:
                    value = row[column.name]
                    if isinstance(column.type, String | Text) and value is not None:
                        hits = [needle for needle in identifying if needle in str(value)]
                        assert not hits, f"{table.name}.{column.name} still holds {hits}"
        # usage and ledger are kept for accounting, anonymised
        assert await _count(session, "usage_records") == kept_usage
        assert await _count(session, "ledger_entries") == kept_ledger
        with pytest.raises(InvalidToken):
            await authenticate(session, ids["secret"])
        with pytest.raises(InvalidToken):
            await authenticate(session, ids["connected_secret"])
    assert not await browser.signed_in() and not await elsewhere.signed_in()
    # the confirmation was sent, then the development outbox forgot the person with the
    # account (tests/portal/test_deletion_leftovers.py: with SMTP it arrives)
    assert not outbox.to(email) and not outbox.to("elsewhere@example.net")
    assert (await new_browser().sign_in(email)).status_code == 400


async def _count(session, table_name: str) -> int:
    table = Base.metadata.tables[table_name]
    return int(await session.scalar(select(func.count()).select_from(table)))
