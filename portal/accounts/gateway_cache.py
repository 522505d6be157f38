"""Dropping the gateways' cached token checks (Redis) when what they answer changes.

The gateway side, lookup and fill, is `portal.tokens.auth_cache` (its docstring
describes the keys and the fences). This is the writer's side, here in `accounts`
because account changes (verification, suspension, plan, deletion) must reach the
cache as surely as a token's revocation does, and `tokens` sits above `accounts`.

Services do not call Redis themselves: inside their transaction they say what changed,

    drop_token_after_commit(session, token.token_hash)   # tokens.service.revoke_token
    drop_user_after_commit(session, user.id)             # accounts.service: verify,
                                                         # suspend, set_plan, delete

and the transaction (`portal.db.effects`) drops the entries once it has committed, over
one connection; on a rollback nothing is dropped. The Redis URL comes from the entry
point (`use_redis(database, settings.redis_url)`), else from REDIS_URL; without one
there is no cache and nothing to do. If Redis cannot be reached the failure is logged
and the entries expire within AUTH_CACHE_TTL_SECONDS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession

from portal.db import Database
from portal.db.effects import registered
from portal.settings import get_settings

__all__ = [
    "FENCE_SECONDS",
    "TOKEN_FENCE_PREFIX",
    "TOKEN_PREFIX",
    "USER_FENCE_PREFIX",
    "USER_PREFIX",
    "drop_token",
    "drop_token_after_commit",
    "drop_user",
    "drop_user_after_commit",
    "invalidate_token",
    "invalidate_user",
    "redis_client",
    "use_redis",
]

log = logging.getLogger(__name__)

FENCE_SECONDS = 10
_PREFIX = "wfg:auth:"
TOKEN_PREFIX = _PREFIX + "tok:"
USER_PREFIX = _PREFIX + "user:"
TOKEN_FENCE_PREFIX = _PREFIX + "fence:tok:"
USER_FENCE_PREFIX = _PREFIX + "fence:user:"

# KEYS: user set, user fence; ARGV: fence seconds, token key prefix
_INVALIDATE_USER = """
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
local hashes = redis.call('SMEMBERS', KEYS[1])
for _, h in ipairs(hashes) do
  redis.call('DEL', ARGV[2] .. h)
end
redis.call('DEL', KEYS[1])
return #hashes
"""

_REDIS_URL = "portal.accounts.gateway_cache.redis_url"
_EFFECT = "portal.accounts.gateway_cache"


def use_redis(database: Database, redis_url: str | None) -> None:
    """Entry points: the cache the services of `database` invalidate (None: no cache)."""
    database.session_info[_REDIS_URL] = redis_url


def drop_token_after_commit(session: AsyncSession, token_hash: str) -> None:
    """Drop one token's cached check once the transaction of `session` commits."""
    _pending(session).token_hashes[token_hash] = None


def drop_user_after_commit(session: AsyncSession, user_id: str) -> None:
    """Drop every cached check of a user's tokens once the transaction commits."""
    _pending(session).user_ids[user_id] = None


@dataclass
class _Pending:
    """One transaction's invalidations (dicts: ordered, each key once)."""

    configured: bool
    redis_url: str | None
    token_hashes: dict[str, None] = field(default_factory=dict)
    user_ids: dict[str, None] = field(default_factory=dict)

    async def __call__(self) -> None:
        url = self.redis_url if self.configured else get_settings().redis_url
        if url:
            await _invalidate(url, list(self.token_hashes), list(self.user_ids))


def _pending(session: AsyncSession) -> _Pending:
    collector = registered(session)
    pending = collector.get(_EFFECT)
    if not isinstance(pending, _Pending):
        pending = _Pending(_REDIS_URL in session.info, session.info.get(_REDIS_URL))
        collector.add(pending, key=_EFFECT)
    return pending


async def invalidate_token(token_hash: str, *, redis_url: str | None = None) -> bool:
    """Drop one token's cached check now (tests and tools; services use
    `drop_token_after_commit`). True when done (or there is no cache); False when Redis
    could not be reached: the change then holds within AUTH_CACHE_TTL_SECONDS."""
    url = redis_url or get_settings().redis_url
    return not url or await _invalidate(url, [token_hash], [])


async def invalidate_user(user_id: str, *, redis_url: str | None = None) -> bool:
    """Drop every cached check of a user's tokens now; returns as `invalidate_token`."""
    url = redis_url or get_settings().redis_url
    return not url or await _invalidate(url, [], [user_id])


async def drop_token(client: aioredis.Redis, token_hash: str) -> None:
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(TOKEN_FENCE_PREFIX + token_hash, "1", ex=FENCE_SECONDS)
        pipe.delete(TOKEN_PREFIX + token_hash)
        await pipe.execute()


async def drop_user(client: aioredis.Redis, user_id: str) -> None:
    await client.eval(
        _INVALIDATE_USER,
        2,
        USER_PREFIX + user_id,
        USER_FENCE_PREFIX + user_id,
        FENCE_SECONDS,
        TOKEN_PREFIX,
    )


async def _invalidate(url: str, token_hashes: list[str], user_ids: list[str]) -> bool:
    if not token_hashes and not user_ids:
        return True
    client = redis_client(url)
    try:
        for token_hash in token_hashes:
            await drop_token(client, token_hash)
        for user_id in user_ids:
            await drop_user(client, user_id)
    except Exception as exc:
        log.error(
            "auth cache invalidation failed (%s); cached token checks expire within "
            "AUTH_CACHE_TTL_SECONDS",
            type(exc).__name__,
        )
        return False
    finally:
        await client.aclose()
    return True


def redis_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
    )
