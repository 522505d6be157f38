"""LiteLLM `custom_auth`: where a gateway token is checked.

Wired in config.yaml as `general_settings.custom_auth: gateway_plugins.auth.user_api_key_auth`.
"""

from __future__ import annotations

import logging

from fastapi import Request
from litellm.proxy._types import ProxyException, UserAPIKeyAuth

from gateway_plugins.proxy_errors import service_unavailable, to_proxy_exception
from gateway_plugins.runtime import get_runtime
from portal.errors import GatewayError
from portal.tokens.service import authenticate

__all__ = ["user_api_key_auth"]

log = logging.getLogger(__name__)

# LiteLLM lets a client choose the call id with this header; the call id keys the
# reservation, the usage record and the debit, so a reused id could dodge a debit.
_CLIENT_CALL_ID_HEADER = "x-litellm-call-id"


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    if _CLIENT_CALL_ID_HEADER in request.headers:
        raise ProxyException(
            message=f"The {_CLIENT_CALL_ID_HEADER} header is not accepted by this gateway.",
            type="invalid_request_error",
            param=_CLIENT_CALL_ID_HEADER,
            code=400,
        )
    runtime = get_runtime()
    try:
        async with runtime.database.session() as session:
            identity = await authenticate(session, api_key or "")
    except GatewayError as refused:
        raise to_proxy_exception(refused) from None
    except Exception as exc:
        log.error("token check failed: %s", type(exc).__name__)
        raise service_unavailable("Authentication") from None
    return UserAPIKeyAuth(
        api_key=identity.token_hash,
        token=identity.token_hash,
        user_id=identity.user_id,
        metadata={"wfg_token_id": identity.token_id},
    )
