"""Steps 1 and 3 of the pipeline together: who is calling (`auth`), and may they call now
(`rate_limits`).

With Redis, a token whose check is cached costs one round trip for both: the admission
script reads the auth-cache entry and takes the call's RPM entry and slot under the
limits of the plan it names (`RateLimiter.admit_cached_token`). Otherwise (not cached,
no Redis, Redis failing) the token is checked as `auth.identify` does, then the limits.
Everything Redis does for the call shares one budget (`runtime.redis_budget()`, 250 ms by
default); past it, or while Redis's breaker is open, the token is read from the database
and the limits are this process's share, in memory (`rate_limits`).
The pipeline validates the body after this; a call refused there gets its RPM entry back
and frees its slot (`InFlightSlot.release(refund=True)`), so a refused request costs the
user nothing, as before.
"""

from __future__ import annotations

import logging
import uuid

from starlette.datastructures import Headers

from gateway_plugins.auth import from_database, identify, presented_token
from gateway_plugins.rate_limits import InFlightSlot
from gateway_plugins.runtime import GatewayRuntime
from portal.tokens.auth_cache import AuthCache, decode
from portal.tokens.secrets import hash_token, looks_like_token
from portal.tokens.service import TokenIdentity, check_expiry

__all__ = ["admit"]

log = logging.getLogger(__name__)


async def admit(runtime: GatewayRuntime, headers: Headers) -> tuple[TokenIdentity, InFlightSlot]:
    """The caller's identity and the call's slot; InvalidToken (401), a refusal of the
    account (403) or RateLimited (429) otherwise."""
    token = presented_token(headers)
    limits = runtime.config.plugin.limits
    budget = runtime.redis_budget()  # everything Redis does for this call, together
    if runtime.auth_cache is not None and looks_like_token(token):
        member = uuid.uuid4().hex
        cached = await runtime.limiter.admit_cached_token(
            AuthCache.key(hash_token(token)), limits, runtime.deadline_seconds, budget, member
        )
        identity = decode(cached.entry) if cached is not None else None
        if cached is not None and identity is not None:
            slot = runtime.limiter.admitted(
                identity.user_id, runtime.limits_for(identity), cached.member, cached.refused
            )
            slot.budget = budget
            try:
                check_expiry(identity)
            except BaseException:
                await slot.release(refund=True)
                raise
            return identity, slot
        if cached is not None:  # a slot the script took, if any, expires with the deadline
            log.warning("auth cache entry of an unknown format; reading the database")
        timed_out = budget is not None and budget.timed_out
        identity = await from_database(runtime, token, budget)
        if cached is None and timed_out:  # the script may have taken entries meanwhile
            runtime.limiter.forget(identity.user_id, member)
    else:
        identity = await identify(runtime, token, budget)
    slot = await runtime.limiter.admit(
        identity.user_id, runtime.limits_for(identity), runtime.deadline_seconds, budget
    )
    return identity, slot
