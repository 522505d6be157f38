"""The token-check cache shared by every gateway instance (Redis), and its invalidation.

With `REDIS_URL` set, the gateway keeps what a valid token resolves to (the content-free
`TokenIdentity`, plan included) in Redis for `AUTH_CACHE_TTL_SECONDS`, so most requests
skip the database. The services that change what a token check would answer have the
entry deleted right after their transaction commits, so the change holds on every
instance at once; callers do nothing (`portal.accounts.gateway_cache`, the writer's
side, holds the key layout and the invalidation):

    async with db.transaction() as session:
        await tokens.revoke_token(session, user_id=..., token_id=...)  # drops the token
        await accounts.suspend_user(session, user_id)  # drops all the user's tokens
    # committed: both entries are gone (verification, plan change and deletion alike)

Without Redis there is no cache (every request reads the database, which is already
immediate) and there is nothing to invalidate.

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

import orjson
import redis.asyncio as aioredis

from portal.accounts.gateway_cache import (
    FENCE_SECONDS,
    TOKEN_FENCE_PREFIX,
    TOKEN_PREFIX,
    USER_FENCE_PREFIX,
    USER_PREFIX,
    drop_token,
    drop_user,
    invalidate_token,
    invalidate_user,
    redis_client,
)
from portal.tokens.service import TokenIdentity

__all__ = [
    "FENCE_SECONDS",
    "FORMAT",
    "AuthCache",
    "decode",
    "invalidate_token",
    "invalidate_user",
]

log = logging.getLogger(__name__)

_TOKEN = TOKEN_PREFIX
_USER = USER_PREFIX
_TOKEN_FENCE = TOKEN_FENCE_PREFIX
_USER_FENCE = USER_FENCE_PREFIX
FORMAT = 1
"""The entry's format version (`v`). The gateway's admission script reads `v`, `user_id`
and `plan` of an entry too (`gateway_plugins.rate_limits`)."""

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


class AuthCache:
    """The gateway's side: look up and fill. Redis errors degrade to a database read."""

    def __init__(self, client: aioredis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int) -> AuthCache:
        return cls(redis_client(url), ttl_seconds)

    async def get(self, token_hash: str, *, quiet: bool = True) -> TokenIdentity | None:
        """The cached identity, or None; a Redis error is None too unless `quiet` is
        False (the gateway: its Redis breaker counts the error)."""
        try:
            raw = await self.client.get(_TOKEN + token_hash)
        except Exception as exc:
            if not quiet:
                raise
            log.warning("auth cache read failed (%s); reading the database", type(exc).__name__)
            return None
        return decode(raw) if raw is not None else None

    @staticmethod
    def key(token_hash: str) -> str:
        """The Redis key of a token's entry."""
        return _TOKEN + token_hash

    async def put(self, identity: TokenIdentity, *, read_at: float, quiet: bool = True) -> bool:
        """Cache `identity`, read from the database at `read_at` (time.monotonic()).
        False when a fence or the age of the read forbade it, or Redis failed (raised
        instead unless `quiet`)."""
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
            if not quiet:
                raise
            log.warning("auth cache write failed (%s)", type(exc).__name__)
            return False
        return bool(written)

    async def invalidate_token(self, token_hash: str) -> None:
        await drop_token(self.client, token_hash)

    async def invalidate_user(self, user_id: str) -> None:
        await drop_user(self.client, user_id)

    async def close(self) -> None:
        await self.client.aclose()


def _encode(identity: TokenIdentity) -> str:
    return json.dumps(
        {
            "v": FORMAT,
            "token_id": identity.token_id,
            "user_id": identity.user_id,
            "token_hash": identity.token_hash,
            "expires_at": identity.expires_at.isoformat() if identity.expires_at else None,
            "plan": identity.plan,
        },
        separators=(",", ":"),
    )


def decode(raw: bytes | str) -> TokenIdentity | None:
    """An entry's identity; None for an entry of another format."""
    try:
        data: dict[str, Any] = orjson.loads(raw)
        if data.get("v") != FORMAT:
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
