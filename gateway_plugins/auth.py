"""Step 1: authenticate. Where a gateway token is checked.

The token comes as `Authorization: Bearer <token>` (OpenAI SDKs) or `x-api-key: <token>`
(Anthropic SDKs). A valid token's identity is cached in Redis when configured (shared by
every instance; the portal invalidates it on revocation, suspension or plan change), and
otherwise read from the database on every request, which is immediate by construction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from gateway_plugins.breaker import Budget
from gateway_plugins.runtime import GatewayRuntime
from portal.errors import InvalidToken
from portal.tokens.secrets import hash_token, looks_like_token
from portal.tokens.service import (
    TokenIdentity,
    authenticate,
    authenticate_on_driver,
    check_expiry,
)

__all__ = ["from_database", "identify", "presented_token"]

log = logging.getLogger(__name__)

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


async def identify(
    runtime: GatewayRuntime, token: str, budget: Budget | None = None
) -> TokenIdentity:
    """The token's identity, or the domain error that says why it is refused. Redis is
    used within `budget` (a new one by default); the database within its deadline and
    breaker (DependencyDown or TimeoutError: the caller answers 503)."""
    cache = runtime.auth_cache
    budget = budget or runtime.redis_budget()
    if cache is not None and budget is not None and looks_like_token(token):
        try:
            cached = await budget.run(lambda: cache.get(hash_token(token), quiet=False))
        except Exception as exc:
            log.warning("auth cache unavailable (%s); reading the database", type(exc).__name__)
            cached = None
        if cached is not None:
            check_expiry(cached)
            return cached
    return await from_database(runtime, token, budget)


async def from_database(
    runtime: GatewayRuntime, token: str, budget: Budget | None = None
) -> TokenIdentity:
    """The token checked in the database (and the answer cached, if valid)."""
    database = runtime.database
    read_at = time.monotonic()
    async with runtime.postgres.call():
        if database.sends_by_driver:  # one SELECT sent by the driver, no BEGIN/ROLLBACK
            async with database.per_call() as driver:
                identity = await authenticate_on_driver(driver, token)
        else:
            async with database.autocommit() as connection:
                identity = await authenticate(connection, token)
    cache = runtime.auth_cache
    budget = budget or runtime.redis_budget()
    if cache is not None and budget is not None:
        try:
            await budget.run(lambda: cache.put(identity, read_at=read_at, quiet=False))
        except Exception as exc:  # the next call reads the database again
            log.warning("auth cache write skipped (%s)", type(exc).__name__)
    return identity
