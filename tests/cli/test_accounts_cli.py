"""`gateway-admin users / credits / tokens / usage` against the test databases."""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.accounts.models import User
from portal.accounts.passwords import verify_password
from portal.credits import ledger
from portal.credits.units import format_units
from portal.db import Database, utcnow
from portal.errors import AccountSuspended, TokenRevoked
from portal.tokens import service as tokens
from portal.tokens.auth_cache import AuthCache
from portal.usage.models import CallStatus
from portal.usage.settlement import FinishedCall, settle_call
from tests.cli.conftest import Admin, side_by_side
from tests.fixtures.gateway import MakeUser

TOKEN = re.compile(r"wfg_[A-Za-z0-9_-]{43}")


async def test_users_create_then_grant_and_read_balances(db: Database, admin: Admin) -> None:
    created = admin(
        "users", "create", "--email", " Ann@Example.COM ", "--name", "Ann Operator",
        "--verified", "--password-stdin", stdin="a long enough passphrase\n",
    ).ok()  # fmt: skip
    async with db.session() as session:
        user = await session.scalar(select(User).where(User.email == "ann@example.com"))
    assert user is not None
    assert created == f"{user.id}\n"
    assert user.is_verified and user.name == "Ann Operator"
    assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, "a long enough passphrase")

    email = ("--email", "ann@example.com")
    once = ("--idempotency-key", "welcome-ann", "--reason", "welcome")
    first = admin("credits", "grant", *email, "--amount", "12.5", *once).ok()
    again, correction, no_password = admin.many(
        ("credits", "grant", *email, "--amount", "12.5", *once),
        ("credits", "grant", *email, "--amount", "-0.000000001", "--reason", "correction"),
        ("users", "create", "--email", "bob@example.com", "--name", "Bob", "--password-stdin"),
    )
    assert first.startswith("granted: 12.5 credits")
    assert "already granted" in again.ok()
    assert correction.ok().startswith("granted: -0.000000001 credits")
    assert "no password on standard input" in no_password.failed()
    assert admin("credits", "balance", *email, "--raw").ok() == "12499999999\n"
    async with db.session() as session:
        assert await ledger.balance(session, user.id) == 12_499_999_999
        assert await ledger.ledger_sum(session, user.id) == 12_499_999_999
        notes = sorted(e.note or "" for e in await ledger.list_entries(session, user.id))
    assert notes == ["correction", "welcome"]


async def test_tokens_create_list_and_revoke(
    db: Database, admin: Admin, make_user: MakeUser
) -> None:
    user = await make_user("1")  # has a token named "test"
    email = ("--email", user.email)
    created = admin("tokens", "create", *email, "--name", "laptop").ok()
    assert TOKEN.fullmatch(created.rstrip("\n")) and created.count("\n") == 1  # only the token
    laptop = created.rstrip("\n")
    async with db.transaction() as session:
        assert (await tokens.authenticate(session, laptop)).user_id == user.user_id
        owner = await session.get(User, user.user_id)
        assert owner is not None
        phone, _ = await tokens.create_token(session, owner, name="phone")

    listed = json.loads(admin("tokens", "list", *email, "--json").ok())
    by_name = {row["name"]: row for row in listed}
    assert set(by_name) == {"laptop", "phone", "test"}
    assert set(by_name["laptop"]) == {
        "id", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at",
        "limit_credits", "limit_reset",
    }  # fmt: skip
    assert by_name["laptop"]["prefix"] == laptop[:10]
    assert by_name["test"]["id"] == user.token_id
    assert all(row["revoked_at"] is None for row in listed)
    assert all(secret not in json.dumps(listed) for secret in (laptop, phone, user.token))

    results = admin.many(
        ("tokens", "revoke", *email, "--prefix", laptop[:10]),
        ("tokens", "revoke", *email, "--name", "phone"),
        ("tokens", "revoke", *email, "--id", user.token_id),
    )
    assert [r.ok().split(" (")[0] for r in results] == [
        f"revoked {laptop[:10]}…", f"revoked {phone[:10]}…", f"revoked {user.token[:10]}…",
    ]  # fmt: skip
    for revoked in (laptop, phone, user.token):  # at once: the next lookup refuses it
        async with db.session() as session:
            with pytest.raises(TokenRevoked):
                await tokens.authenticate(session, revoked)


async def test_usage_list_json(db: Database, admin: Admin, make_user: MakeUser) -> None:
    user, other = await make_user("1"), await make_user("1")
    started = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    calls = [
        FinishedCall(
            call_id=f"call-{uuid.uuid4().hex}",
            user_id=owner.user_id,
            token_id=owner.token_id,
            model=model,
            status=status,
            started_at=started + timedelta(seconds=offset),
            ended_at=started + timedelta(seconds=offset + 1),
            prompt_tokens=prompt,
            completion_tokens=completion,
            credits=credits,
        )
        for owner, model, status, offset, prompt, completion, credits in (
            (user, "gpt-4.1-nano", CallStatus.SUCCESS, 0, 200, 50, 40_000),
            (user, "claude-haiku-4-5", CallStatus.FAILED, 10, 0, 0, 0),
            (other, "gpt-4.1-nano", CallStatus.SUCCESS, 5, 1, 1, 7),
        )
    ]
    async with db.transaction() as session:
        for call in calls:
            await settle_call(session, call)

    listed = json.loads(admin("usage", "list", "--email", user.email, "--json").ok())
    assert listed == [
        {
            "request_id": call.call_id,
            "model": call.model,
            "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens,
            "charged_units": call.credits,
            "charged_credits": format_units(call.credits),
            "status": call.status,
            "started_at": call.started_at.isoformat(),
            "ended_at": call.ended_at.isoformat(),
        }
        for call in calls[:2]
    ]
    assert all(type(row["charged_units"]) is int for row in listed)
    assert listed[0]["charged_credits"] == "0.00004"  # 40,000 units, read as credits
    assert all("credits" not in row for row in listed)  # no bare number named credits


async def test_unknown_accounts_and_tokens_are_one_line_errors(
    db: Database, admin: Admin, make_user: MakeUser
) -> None:
    user = await make_user("1")
    unknown_email, unknown_token, balance, listed = admin.many(
        ("credits", "grant", "--email", "nobody@example.com", "--amount", "1", "--reason", "r"),
        ("tokens", "revoke", "--email", user.email, "--name", "no-such-token"),
        ("credits", "balance", "--email", user.email),
        ("tokens", "list", "--email", user.email),
    )
    assert "no account with that email" in unknown_email.failed()
    assert "no such token for that account" in unknown_token.failed()
    assert balance.ok() == "1 credits (1 available, 0 reserved)\n"
    (line,) = listed.ok().splitlines()
    assert line.startswith(f"{user.token_id}  {user.token[:10]}…  active")
    assert user.token not in line
    async with db.session() as session:  # nothing changed
        assert await ledger.balance(session, user.user_id) == 10**9
        assert [t.revoked_at for t in await tokens.list_tokens(session, user.user_id)] == [None]


@pytest.mark.redis
async def test_suspend_revoke_and_unsuspend_reach_the_gateways_cache_redis(
    db: Database, admin: Admin, make_user: MakeUser, redis_url: str
) -> None:
    suspended, revoked = await make_user("1"), await make_user("1")
    cache = AuthCache.from_url(redis_url, ttl_seconds=60)
    try:
        hashes = []
        for user in (suspended, revoked):
            async with db.session() as session:
                identity = await tokens.authenticate(session, user.token)
            assert await cache.put(identity, read_at=time.monotonic())
            hashes.append(identity.token_hash)
        # no command invalidates anything itself: the services do, after their commit
        suspend, revoke, unknown = side_by_side(
            *(
                functools.partial(admin, *command, REDIS_URL=redis_url)
                for command in (
                    ("users", "suspend", "--email", suspended.email),
                    ("tokens", "revoke", "--email", revoked.email, "--id", revoked.token_id),
                    ("users", "suspend", "--email", "nobody@example.com"),
                )
            )
        )
        assert suspend.ok() == "suspended\n"
        assert revoke.ok().startswith("revoked ")
        assert "no account with that email" in unknown.failed()
        assert [await cache.get(token_hash) for token_hash in hashes] == [None, None]
    finally:
        await cache.close()
    async with db.session() as session:
        with pytest.raises(AccountSuspended):
            await tokens.authenticate(session, suspended.token)
    unsuspend = ("users", "unsuspend", "--email", suspended.email)
    assert admin(*unsuspend, REDIS_URL=redis_url).ok() == "active again\n"
    async with db.session() as session:
        assert (await tokens.authenticate(session, suspended.token)).user_id == suspended.user_id
