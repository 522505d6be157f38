"""The shared token-check cache against the real Redis: what it keeps, and that an
invalidation wins every race with a gateway's concurrent database read."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from portal.accounts.service import create_user
from portal.db import open_database
from portal.db.migrate import upgrade_async
from portal.settings import get_settings
from portal.tokens import auth_cache
from portal.tokens.auth_cache import FENCE_SECONDS, AuthCache
from portal.tokens.secrets import hash_token, new_token
from portal.tokens.service import TokenIdentity, authenticate, create_token

pytestmark = pytest.mark.redis


def identity(user_id: str | None = None, *, expires_at: datetime | None = None) -> TokenIdentity:
    token_hash = hash_token(new_token())
    return TokenIdentity(
        token_id=str(uuid.uuid4()),
        user_id=user_id or str(uuid.uuid4()),
        token_hash=token_hash,
        expires_at=expires_at,
        plan="pro",
    )


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[AuthCache]:
    cache = AuthCache.from_url(redis_url, ttl_seconds=30)
    yield cache
    await cache.close()


async def test_a_filled_entry_is_read_back_with_its_plan_and_expiry(cache: AuthCache) -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    who = identity(expires_at=expires)
    assert await cache.get(who.token_hash) is None
    assert await cache.put(who, read_at=time.monotonic())
    assert await cache.get(who.token_hash) == who


async def test_entries_hold_only_ids_and_expire_after_the_ttl(
    cache: AuthCache, redis_url: str
) -> None:
    who = identity()
    await cache.put(who, read_at=time.monotonic())
    client = aioredis.Redis.from_url(redis_url)
    try:
        key = f"wfg:auth:tok:{who.token_hash}"
        stored = json.loads(await client.get(key))
        assert set(stored) == {"v", "token_id", "user_id", "token_hash", "expires_at", "plan"}
        assert 0 < await client.ttl(key) <= 30
        assert 0 < await client.ttl(f"wfg:auth:user:{who.user_id}") <= 30
    finally:
        await client.aclose()


async def test_revoking_one_token_drops_it_and_keeps_the_users_others(
    cache: AuthCache, redis_url: str
) -> None:
    first = identity()
    second = identity(first.user_id)
    for who in (first, second):
        await cache.put(who, read_at=time.monotonic())
    assert await auth_cache.invalidate_token(first.token_hash, redis_url=redis_url)
    assert await cache.get(first.token_hash) is None
    assert await cache.get(second.token_hash) == second


async def test_a_user_change_drops_every_token_of_that_user_only(
    cache: AuthCache, redis_url: str
) -> None:
    first = identity()
    mine = [first, identity(first.user_id)]
    theirs = identity()
    for who in (*mine, theirs):
        await cache.put(who, read_at=time.monotonic())
    assert await auth_cache.invalidate_user(mine[0].user_id, redis_url=redis_url)
    assert [await cache.get(who.token_hash) for who in mine] == [None, None]
    assert await cache.get(theirs.token_hash) == theirs


async def test_a_read_from_before_the_revocation_is_never_cached_after_it(
    cache: AuthCache, redis_url: str
) -> None:
    # A gateway read the token as valid, then the portal revoked and invalidated,
    # then the gateway's write arrives: it must not land.
    who = identity()
    read_at = time.monotonic()
    assert await auth_cache.invalidate_token(who.token_hash, redis_url=redis_url)
    assert not await cache.put(who, read_at=read_at)
    assert await cache.get(who.token_hash) is None

    other = identity()
    read_at = time.monotonic()
    assert await auth_cache.invalidate_user(other.user_id, redis_url=redis_url)
    assert not await cache.put(other, read_at=read_at)
    assert await cache.get(other.token_hash) is None


async def test_a_read_older_than_the_fence_is_not_cached(cache: AuthCache) -> None:
    who = identity()
    assert not await cache.put(who, read_at=time.monotonic() - FENCE_SECONDS)
    assert await cache.get(who.token_hash) is None


async def test_without_redis_there_is_nothing_to_invalidate() -> None:
    # Without REDIS_URL there is no cache, so the database check is immediate anyway.
    if get_settings().redis_url:
        pytest.skip("REDIS_URL is set in the test process")
    assert await auth_cache.invalidate_token(hash_token(new_token()))
    assert await auth_cache.invalidate_user(str(uuid.uuid4()))


async def test_an_unreachable_redis_means_a_database_read_and_a_failed_invalidation() -> None:
    down = AuthCache.from_url("redis://127.0.0.1:1/0", ttl_seconds=30)
    try:
        who = identity(expires_at=datetime.now(UTC) + timedelta(days=1))
        assert await down.get(who.token_hash) is None
        assert not await down.put(who, read_at=time.monotonic())
    finally:
        await down.close()
    assert not await auth_cache.invalidate_token(who.token_hash, redis_url="redis://127.0.0.1:1/0")


async def test_revoking_with_the_cli_drops_the_cached_check(
    cache: AuthCache, redis_url: str, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'cli.db'}"
    await upgrade_async(database_url)
    database = open_database(database_url)
    try:
        async with database.transaction() as session:
            user = await create_user(session, email="cli@example.com", name="C", verified=True)
            plaintext, token = await create_token(session, user, name="laptop")
            identity = await authenticate(session, plaintext)
    finally:
        await database.dispose()
    await cache.put(identity, read_at=time.monotonic())
    env = {
        **{k: v for k, v in os.environ.items() if k != "WFG_DATABASE_URL"},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "WFG_VAR_DIR": str(tmp_path / "var"),
    }

    revoked = await asyncio.to_thread(
        subprocess.run,
        [Path(sys.executable).parent / "gateway-admin", "tokens", "revoke",
         "--email", "cli@example.com", "--id", token.id],
        env=env, capture_output=True, text=True,
    )  # fmt: skip

    assert revoked.returncode == 0 and revoked.stderr == "", revoked.stderr
    assert await cache.get(identity.token_hash) is None
