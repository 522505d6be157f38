"""The token-check cache shared by every gateway instance (Redis), and its invalidation.

With `REDIS_URL` set, the gateway keeps what a valid token resolves to (the content-free
`TokenIdentity`, plan included) in Redis for `AUTH_CACHE_TTL_SECONDS`, so most requests
skip the database. Whoever changes what a token check would answer deletes the entry
right after its transaction commits, so the change holds on every instance at once:

    async with db.transaction() as session:
        token = await tokens.revoke_token(session, user_id=..., token_id=...)
    await auth_cache.invalidate_token(token.token_hash)   # revocation
    await auth_cache.invalidate_user(user.id)             # suspension, verification,
                                                          # plan change, deletion

Without Redis there is no cache (every request reads the database, which is already
immediate) and both functions do nothing.

Keys hold no secret and no content (a token's SHA-256 is what the database stores):

    wfg:auth:tok:<token_hash>        JSON identity, expires after the TTL
    wfg:auth:user:<user_id>          set of that user's cached token hashes
    wfg:auth:fence:tok:<token_hash>  set by an invalidation for FENCE_SECONDS
    wfg:auth:fence:user:<user_id>

The fences close a race: a gateway reads a still-valid token from the database, the
portal revokes it and invalidates, and only then the gateway writes its stale read. The
fill is one Lua script that writes nothing while a fence stands, and a fill whose read is
older than the fence lifetime is dropped, so a stale read can never land after the
invalidation. (Standalone Redis or Sentinel; the scripts touch keys of several slots.)
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from portal.settings import get_settings
from portal.tokens.service import TokenIdentity

__all__ = ["FENCE_SECONDS", "AuthCache", "invalidate_token", "invalidate_user"]

log = logging.getLogger(__name__)

FENCE_SECONDS = 10
_PREFIX = "wfg:auth:"
_TOKEN = _PREFIX + "tok:"
_USER = _PREFIX + "user:"
_TOKEN_FENCE = _PREFIX + "fence:tok:"
_USER_FENCE = _PREFIX + "fence:user:"
_FORMAT = 1

# KEYS: token key, user set, token fence, user fence; ARGV: value, ttl, token hash
_FILL = """
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""
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


class AuthCache:
    """The gateway's side: look up and fill. Redis errors degrade to a database read."""

    def __init__(self, client: aioredis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int) -> AuthCache:
        return cls(_client(url), ttl_seconds)

    async def get(self, token_hash: str) -> TokenIdentity | None:
        try:
            raw = await self.client.get(_TOKEN + token_hash)
        except Exception as exc:
            log.warning("auth cache read failed (%s); reading the database", type(exc).__name__)
            return None
        return _decode(raw) if raw is not None else None

    async def put(self, identity: TokenIdentity, *, read_at: float) -> bool:
        """Cache `identity`, read from the database at `read_at` (time.monotonic()).
        False when a fence or the age of the read forbade it, or Redis failed."""
        if time.monotonic() - read_at > FENCE_SECONDS / 2:
            return False
        try:
            written = await self.client.eval(
                _FILL,
                4,
                _TOKEN + identity.token_hash,
                _USER + identity.user_id,
                _TOKEN_FENCE + identity.token_hash,
                _USER_FENCE + identity.user_id,
                _encode(identity),
                self.ttl_seconds,
                identity.token_hash,
            )
        except Exception as exc:
            log.warning("auth cache write failed (%s)", type(exc).__name__)
            return False
        return bool(written)

    async def invalidate_token(self, token_hash: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(_TOKEN_FENCE + token_hash, "1", ex=FENCE_SECONDS)
            pipe.delete(_TOKEN + token_hash)
            await pipe.execute()

    async def invalidate_user(self, user_id: str) -> None:
        await self.client.eval(
            _INVALIDATE_USER, 2, _USER + user_id, _USER_FENCE + user_id, FENCE_SECONDS, _TOKEN
        )

    async def close(self) -> None:
        await self.client.aclose()


async def invalidate_token(token_hash: str, *, redis_url: str | None = None) -> bool:
    """Drop one token's cached check on every instance; call after the commit.

    True when done (or there is no cache). False when Redis could not be reached: the
    change then reaches instances that cached the token within AUTH_CACHE_TTL_SECONDS."""
    return await _invalidate("token", token_hash, redis_url)


async def invalidate_user(user_id: str, *, redis_url: str | None = None) -> bool:
    """Drop every cached check of a user's tokens (suspension, verification, plan change,
    deletion); call after the commit. Returns as `invalidate_token` does."""
    return await _invalidate("user", user_id, redis_url)


async def _invalidate(kind: str, key: str, redis_url: str | None) -> bool:
    settings = get_settings()
    url = redis_url or settings.redis_url
    if not url:
        return True
    cache = AuthCache.from_url(url, settings.auth_cache_ttl_seconds)
    try:
        if kind == "token":
            await cache.invalidate_token(key)
        else:
            await cache.invalidate_user(key)
    except Exception as exc:
        log.error("auth cache invalidation failed (%s)", type(exc).__name__)
        return False
    finally:
        await cache.close()
    return True


def _client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
    )


def _encode(identity: TokenIdentity) -> str:
    return json.dumps(
        {
            "v": _FORMAT,
            "token_id": identity.token_id,
            "user_id": identity.user_id,
            "token_hash": identity.token_hash,
            "expires_at": identity.expires_at.isoformat() if identity.expires_at else None,
            "plan": identity.plan,
        },
        separators=(",", ":"),
    )


def _decode(raw: bytes | str) -> TokenIdentity | None:
    try:
        data: dict[str, Any] = json.loads(raw)
        if data.get("v") != _FORMAT:
            return None
        expires = data["expires_at"]
        return TokenIdentity(
            token_id=str(data["token_id"]),
            user_id=str(data["user_id"]),
            token_hash=str(data["token_hash"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            plan=str(data["plan"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
