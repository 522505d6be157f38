"""Step 1: authenticate. Where a gateway token is checked.

The token comes as `Authorization: Bearer <token>` (OpenAI SDKs) or `x-api-key: <token>`
(Anthropic SDKs). A valid token's identity is cached in Redis when configured (shared by
every instance; the portal invalidates it on revocation, suspension or plan change), and
otherwise read from the database on every request, which is immediate by construction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from portal.db import Database
from portal.errors import InvalidToken
from portal.tokens.auth_cache import AuthCache
from portal.tokens.secrets import hash_token, looks_like_token
from portal.tokens.service import (
    TokenIdentity,
    authenticate,
    authenticate_on_driver,
    check_expiry,
)

__all__ = ["from_database", "identify", "presented_token"]

_MISSING = "Missing gateway token: send it as 'Authorization: Bearer <token>' or 'x-api-key'."


def presented_token(headers: Mapping[str, str]) -> str:
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = headers.get("x-api-key", "").strip()
    if api_key:
        return api_key
    raise InvalidToken(_MISSING)


async def identify(database: Database, cache: AuthCache | None, token: str) -> TokenIdentity:
    """The token's identity, or the domain error that says why it is refused."""
    if cache is not None and looks_like_token(token):
        cached = await cache.get(hash_token(token))
        if cached is not None:
            check_expiry(cached)
            return cached
    return await from_database(database, cache, token)


async def from_database(database: Database, cache: AuthCache | None, token: str) -> TokenIdentity:
    """The token checked in the database (and the answer cached, if valid)."""
    read_at = time.monotonic()
    if database.sends_by_driver:  # one SELECT sent by the driver, no BEGIN/ROLLBACK around it
        async with database.per_call() as driver:
            identity = await authenticate_on_driver(driver, token)
    else:
        async with database.autocommit() as connection:
            identity = await authenticate(connection, token)
    if cache is not None:
        await cache.put(identity, read_at=read_at)
    return identity
