"""Rows that disappear between two statements of one request (found by mypy --strict:
`session.get`/`session.scalar` may answer None there, and the code used the answer as is)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import flows, throttle
from portal.accounts.models import ThrottleCounter, User
from portal.db import Database
from tests.portal.conftest import SignedInUser
from tests.portal.support import PASSWORD


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/account/password", {"current_password": PASSWORD, "new_password": "another secret!"}),
        ("/account/email", {"new_email": "elsewhere@example.com", "password": PASSWORD}),
    ],
)
async def test_an_account_deleted_in_another_tab_meanwhile_is_signed_out(
    signed_in: SignedInUser,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    form: dict[str, str],
) -> None:
    browser, user_id, _email = await signed_in()

    async def deleted_in_another_tab(session: AsyncSession, user: User) -> None:
        await session.execute(delete(User).where(User.id == user_id))

    # The re-entry is counted in its own transaction after the request found its user.
    monkeypatch.setattr(flows, "admit_password_reentry", deleted_in_another_tab)
    response = await browser.post(path, form, page="/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/account"


async def test_a_throttle_row_cleared_between_insert_and_count_is_counted_afresh(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = f"person-{uuid.uuid4().hex[:10]}@example.com"
    real_insert = throttle.insert_ignore
    calls = 0

    async def cleared_right_after(session: AsyncSession, model: Any, **values: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:  # as if a successful sign-in deleted the row we just inserted
            return False
        return await real_insert(session, model, **values)

    monkeypatch.setattr(throttle, "insert_ignore", cleared_right_after)
    async with db.transaction() as session:
        wait = await throttle.take(session, throttle.SIGN_IN_PAIR, email, "203.0.113.9")
    assert wait == 0
    key = throttle._key(throttle.SIGN_IN_PAIR, (email, "203.0.113.9"))
    async with db.session() as session:
        hits = await session.scalar(
            select(ThrottleCounter.hits).where(ThrottleCounter.key_hash == key)
        )
    assert hits == 1
