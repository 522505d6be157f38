"""The one place where domain errors become HTTP errors LiteLLM understands.

LiteLLM turns any other exception raised from custom_auth into a 500; a ProxyException
with a numeric `code` reaches the client with that status and an OpenAI-style body:
`{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from litellm.proxy._types import ProxyException

from portal.errors import GatewayError

__all__ = ["GatewayProxyException", "service_unavailable", "to_proxy_exception"]


class GatewayProxyException(ProxyException):
    """A ProxyException whose body `code` is our machine-readable code
    ("insufficient_credits", "token_revoked", …) as OpenAI's API does, instead of the
    status number LiteLLM puts there; the HTTP status still comes from `self.code`."""

    def to_dict(self) -> dict:
        body = super().to_dict()
        body["code"] = self.openai_code
        return body


def to_proxy_exception(error: GatewayError) -> ProxyException:
    return GatewayProxyException(
        message=error.message,
        type=error.error_type,
        param=None,
        code=error.status_code,
        openai_code=error.error_code,
    )


def service_unavailable(what: str) -> ProxyException:
    return GatewayProxyException(
        message=f"{what} is temporarily unavailable; please retry shortly.",
        type="api_error",
        param=None,
        code=503,
        openai_code="service_unavailable",
    )
