"""LiteLLM `custom_auth`: where a gateway token is checked.

Wired in config.yaml as `general_settings.custom_auth: gateway_plugins.auth.user_api_key_auth`.
"""

from __future__ import annotations

import logging
import time

from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth

from gateway_plugins.proxy_errors import service_unavailable, to_proxy_exception
from gateway_plugins.rate_limits import limit_fields, rate_limit_scope
from gateway_plugins.runtime import GatewayRuntime, get_runtime
from portal.errors import GatewayError
from portal.tokens.secrets import hash_token, looks_like_token
from portal.tokens.service import TokenIdentity, authenticate, check_expiry

__all__ = ["user_api_key_auth"]

log = logging.getLogger(__name__)

# LiteLLM lets a client choose the call id with this header; the call id keys the
# reservation, the usage record and the debit, so a reused id could dodge a debit.
_CLIENT_CALL_ID_HEADER = "x-litellm-call-id"


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    runtime = get_runtime()
    try:
        if _CLIENT_CALL_ID_HEADER in request.headers:
            raise GatewayError(
                f"The {_CLIENT_CALL_ID_HEADER} header is not accepted by this gateway."
            )
        identity = await _identify(runtime, api_key or "")
    except GatewayError as refused:
        raise to_proxy_exception(refused) from None
    except Exception as exc:
        log.error("token check failed: %s", type(exc).__name__)
        raise service_unavailable("Authentication") from None
    limits = runtime.config.plugin.limits.for_plan(identity.plan)
    return UserAPIKeyAuth(
        # The limiter counts calls in flight per api_key: one scope for all of a user's
        # tokens (see gateway_plugins.rate_limits). The token is named in metadata.
        api_key=rate_limit_scope(identity.user_id),
        user_id=identity.user_id,
        metadata={"wfg_token_id": identity.token_id},
        **limit_fields(limits),
    )


async def _identify(runtime: GatewayRuntime, api_key: str) -> TokenIdentity:
    """The token's identity from the shared cache (Redis) or else the database."""
    cache = runtime.auth_cache
    if cache is not None and looks_like_token(api_key):
        cached = await cache.get(hash_token(api_key))
        if cached is not None:
            check_expiry(cached)
            return cached
    read_at = time.monotonic()
    async with runtime.database.session() as session:
        identity = await authenticate(session, api_key)
    if cache is not None:
        await cache.put(identity, read_at=read_at)
    return identity
