"""The one place where domain errors become HTTP errors LiteLLM understands.

LiteLLM turns any other exception raised from custom_auth into a 500; a ProxyException
with a numeric `code` reaches the client with that status and an OpenAI-style body:
`{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from litellm.proxy._types import ProxyException

from portal.errors import GatewayError

__all__ = ["service_unavailable", "to_proxy_exception"]


def to_proxy_exception(error: GatewayError) -> ProxyException:
    return ProxyException(
        message=error.message,
        type=error.error_type,
        param=None,
        code=error.status_code,
        openai_code=error.error_code,
    )


def service_unavailable(what: str) -> ProxyException:
    return ProxyException(
        message=f"{what} is temporarily unavailable; please retry shortly.",
        type="api_error",
        param=None,
        code=503,
        openai_code="service_unavailable",
    )
