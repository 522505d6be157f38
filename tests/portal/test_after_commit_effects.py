"""The transaction owns what must follow its commit: the services that change a token
check (revoke, suspend, plan, deletion) drop the gateways' cached checks themselves,
after the COMMIT and only then; no caller invalidates anything (real Redis, both
database backends)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator

import pytest

from portal.accounts import service as accounts
from portal.accounts.gateway_cache import use_redis
from portal.accounts.models import AccountStatus, User
from portal.db import Database
from portal.db.effects import after_commit
from portal.errors import AccountSuspended, InvalidToken, TokenRevoked
from portal.privacy.deletion import erase_account
from portal.tokens import service as tokens
from portal.tokens.auth_cache import AuthCache
from portal.tokens.models import GatewayToken
from portal.tokens.service import TokenIdentity
from tests.fixtures.gateway import FundedUser, MakeUser

pytestmark = pytest.mark.redis


class Boom(Exception):
    pass


@pytest.fixture
async def cache(db: Database, redis_url: str) -> AsyncIterator[AuthCache]:
    use_redis(db, redis_url)  # what the portal app and gateway-admin do at start
    cache = AuthCache.from_url(redis_url, ttl_seconds=60)
    yield cache
    await cache.close()


async def cached(db: Database, cache: AuthCache, who: FundedUser) -> TokenIdentity:
    """Authenticate as a gateway does and fill the shared cache with the answer."""
    async with db.session() as session:
        identity = await tokens.authenticate(session, who.token)
    assert await cache.put(identity, read_at=time.monotonic())
    assert await cache.get(identity.token_hash) == identity
    return identity


async def refusal(db: Database, secret: str) -> Exception:
    async with db.session() as session:
        with pytest.raises(Exception) as refused:
            await tokens.authenticate(session, secret)
    return refused.value


async def test_a_revocation_drops_the_cached_check_when_it_commits_not_before(
    db: Database, cache: AuthCache, make_user: MakeUser
) -> None:
    who = await make_user()
    identity = await cached(db, cache, who)
    async with db.transaction() as session:
        await tokens.revoke_token(session, user_id=who.user_id, token_id=who.token_id)
        # not committed yet: a gateway may still rightly answer from the cache
        assert await cache.get(identity.token_hash) == identity
    assert await cache.get(identity.token_hash) is None
    assert isinstance(await refusal(db, who.token), TokenRevoked)


async def test_suspension_drops_every_cached_check_of_the_user_and_unsuspension_restores(
    db: Database, cache: AuthCache, make_user: MakeUser
) -> None:
    who, bystander = await make_user(), await make_user()
    async with db.transaction() as session:
        user = await session.get(User, who.user_id)
        assert user is not None
        second, _ = await tokens.create_token(session, user, name="second")
    also_who = dataclasses.replace(who, token=second)
    mine = [await cached(db, cache, who), await cached(db, cache, also_who)]
    theirs = await cached(db, cache, bystander)

    async with db.transaction() as session:
        assert await accounts.suspend_user(session, who.user_id)
    assert [await cache.get(identity.token_hash) for identity in mine] == [None, None]
    assert await cache.get(theirs.token_hash) == theirs
    assert isinstance(await refusal(db, who.token), AccountSuspended)
    async with db.transaction() as session:
        assert not await accounts.suspend_user(session, who.user_id)  # already: no change

    async with db.transaction() as session:
        assert await accounts.unsuspend_user(session, who.user_id)
    async with db.session() as session:
        assert (await tokens.authenticate(session, who.token)).user_id == who.user_id


async def test_a_plan_change_drops_the_cached_check_carrying_the_old_plan(
    db: Database, cache: AuthCache, make_user: MakeUser
) -> None:
    who = await make_user()
    before = await cached(db, cache, who)
    assert before.plan == "free"
    async with db.transaction() as session:
        await accounts.set_plan(session, who.user_id, "basic")
    assert await cache.get(before.token_hash) is None
    async with db.session() as session:
        assert (await tokens.authenticate(session, who.token)).plan == "basic"


async def test_account_deletion_drops_the_cached_checks(
    db: Database, cache: AuthCache, make_user: MakeUser
) -> None:
    who = await make_user()
    identity = await cached(db, cache, who)
    async with db.transaction() as session:
        user = await session.get(User, who.user_id)
        assert user is not None
        await erase_account(session, user)
    assert await cache.get(identity.token_hash) is None
    assert isinstance(await refusal(db, who.token), InvalidToken)


async def test_a_rollback_runs_no_effect_and_keeps_the_cached_checks(
    db: Database, cache: AuthCache, make_user: MakeUser
) -> None:
    who = await make_user()
    identity = await cached(db, cache, who)
    ran: list[str] = []

    async def effect() -> None:
        ran.append("effect")

    for change in ("revoke", "suspend", "plan"):
        with pytest.raises(Boom):
            async with db.transaction() as session:
                after_commit(session, effect)
                if change == "revoke":
                    await tokens.revoke_token(session, user_id=who.user_id, token_id=who.token_id)
                elif change == "suspend":
                    await accounts.suspend_user(session, who.user_id)
                else:
                    await accounts.set_plan(session, who.user_id, "basic")
                raise Boom
        assert await cache.get(identity.token_hash) == identity, change
    assert ran == []
    async with db.session() as session:
        assert await tokens.authenticate(session, who.token) == identity  # nothing changed


async def test_a_failing_effect_leaves_the_commit_and_the_other_effects_in_place(
    db: Database, cache: AuthCache, make_user: MakeUser, caplog: pytest.LogCaptureFixture
) -> None:
    who = await make_user()
    identity = await cached(db, cache, who)
    ran: list[str] = []
    secret_detail = "user-content-that-must-not-be-logged"

    async def fails() -> None:
        raise Boom(secret_detail)

    async def later() -> None:
        ran.append("later")

    with caplog.at_level(logging.ERROR, logger="portal.db.effects"):
        async with db.transaction() as session:
            after_commit(session, fails)
            await tokens.revoke_token(session, user_id=who.user_id, token_id=who.token_id)
            after_commit(session, later)
    async with db.session() as session:
        token = await session.get(GatewayToken, who.token_id)
        assert token is not None and token.revoked_at is not None  # committed
    assert await cache.get(identity.token_hash) is None  # the next effect still ran
    assert ran == ["later"]
    assert "Boom" in caplog.text and secret_detail not in caplog.text


async def test_unreachable_redis_is_logged_and_the_commit_stands(
    db: Database, make_user: MakeUser, caplog: pytest.LogCaptureFixture
) -> None:
    who = await make_user()
    use_redis(db, "redis://127.0.0.1:1/0")
    with caplog.at_level(logging.ERROR):
        async with db.transaction() as session:
            await accounts.suspend_user(session, who.user_id)
    assert "auth cache invalidation failed" in caplog.text
    async with db.session() as session:
        user = await session.get(User, who.user_id)
        assert user is not None and user.status == AccountStatus.SUSPENDED


async def test_effects_need_a_transaction_that_will_run_them(db: Database) -> None:
    async def effect() -> None:
        pass

    async with db.session() as session:
        with pytest.raises(RuntimeError, match=r"Database\.transaction"):
            after_commit(session, effect)
