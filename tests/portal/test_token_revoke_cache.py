"""Revoking drops the token from every gateway's auth cache, after the commit, whichever
view asked: the flow does it, so no view can forget (real Redis)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from portal.accounts.gateway_cache import use_redis
from portal.accounts.service import create_user
from portal.db import Database
from portal.email.service import Mailer
from portal.email.transport import OutboxTransport
from portal.settings import Settings
from portal.tokens import flows
from portal.tokens.auth_cache import AuthCache
from portal.tokens.service import TokenIdentity, authenticate
from tests.portal.conftest import PORTAL_URL, SignedInUser
from tests.portal.support import PASSWORD, Outbox

pytestmark = pytest.mark.redis


@pytest.fixture
def portal_settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return Settings.from_env(
        {
            "WFG_VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PORTAL_PUBLIC_URL": PORTAL_URL,
            "GATEWAY_PUBLIC_URL": "http://localhost:4000",
        }
    )


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[AuthCache]:
    cache = AuthCache.from_url(redis_url, ttl_seconds=60)
    yield cache
    await cache.close()


async def _cached(db: Database, cache: AuthCache, secret: str) -> TokenIdentity:
    """Authenticate as a gateway would and fill the shared cache with the answer."""
    async with db.session() as session:
        identity = await authenticate(session, secret)
    assert await cache.put(identity, read_at=time.monotonic())
    assert await cache.get(identity.token_hash) == identity
    return identity


async def test_the_revoke_flow_drops_the_cached_check(
    db: Database, cache: AuthCache, portal_settings: Settings, outbox: Outbox
) -> None:
    async with db.transaction() as session:
        user = await create_user(
            session, email="cache@example.com", name="C", password=PASSWORD, verified=True
        )
    mailer = Mailer(OutboxTransport(portal_settings.outbox_dir), sender="wfg@example.com")
    created = await flows.create_token(
        db, mailer, user_id=user.id, name="laptop", tokens_url=f"{PORTAL_URL}/tokens"
    )
    assert outbox.last("cache@example.com", "token_created")  # mailed after the commit
    identity = await _cached(db, cache, created.plaintext)
    use_redis(db, portal_settings.redis_url)  # as the portal app does
    await flows.revoke_token(db, user_id=user.id, token_id=created.token.id)
    assert await cache.get(identity.token_hash) is None


async def test_page_and_api_revoke_both_drop_the_cached_check(
    signed_in: SignedInUser, db: Database, cache: AuthCache
) -> None:
    browser, _user_id, _email = await signed_in()
    for how in ("page", "api"):
        created = (await browser.api("POST", "/api/tokens", json={"name": how})).json()
        identity = await _cached(db, cache, created["secret"])
        token_id = created["token"]["id"]
        if how == "page":
            done = await browser.post(f"/tokens/{token_id}/revoke", {"confirm": "yes"})
            assert done.status_code == 303, how
        else:
            assert (await browser.api("DELETE", f"/api/tokens/{token_id}")).status_code == 200
        assert await cache.get(identity.token_hash) is None, how
