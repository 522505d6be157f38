"""The one place where refusals and failures become HTTP responses, in the caller's API
format: OpenAI's `{"error": {"message", "type", "param", "code"}}` everywhere, Anthropic's
`{"type": "error", "error": {"type", "message"}}` on `/v1/messages`; a refusal with
figures (a token past its spending limit: `limit`, `used`, `resets_at`) carries them in
the error object beside the message, in both formats. Messages never carry
request content of ours (the domain's texts are fixed; upstream 4xx texts describe the
caller's own request and go only to that caller)."""

from __future__ import annotations

from typing import Literal

import orjson
from starlette.responses import Response

from portal.credits.units import format_units
from portal.errors import GatewayError, TokenLimitReached

__all__ = [
    "ApiFormat",
    "ErrorBody",
    "anthropic_error_event",
    "error_response",
    "from_domain",
    "method_not_allowed",
    "not_found",
    "openai_stream_error",
    "service_unavailable",
]

ApiFormat = Literal["openai", "anthropic"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class ErrorBody:
    __slots__ = ("code", "details", "message", "param", "retry_after", "status", "type")

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str,
        code: str,
        param: str | None = None,
        retry_after: int | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        self.details = details
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def openai(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
                **(self.details or {}),
            }
        }

    def anthropic(self) -> dict[str, object]:
        kind = _ANTHROPIC_TYPES.get(self.status, "api_error")
        error = {"type": kind, "message": self.message, **(self.details or {})}
        return {"type": "error", "error": error}


def from_domain(error: GatewayError) -> ErrorBody:
    return ErrorBody(
        error.status_code,
        error.message,
        type=error.error_type,
        code=error.error_code,
        param=getattr(error, "param", None),
        retry_after=getattr(error, "retry_after", None),
        details=_limit_figures(error) if isinstance(error, TokenLimitReached) else None,
    )


def _limit_figures(error: TokenLimitReached) -> dict[str, object]:
    """The token's limit and use (credits as decimal strings, as `/v1/credits` shows
    them, and units), and when it resets (ISO 8601, UTC; null: never)."""
    resets = error.resets_at
    return {
        "limit": format_units(error.limit_units),
        "limit_units": error.limit_units,
        "used": format_units(error.used_units),
        "used_units": error.used_units,
        "resets_at": resets.isoformat() if resets is not None else None,
    }


def service_unavailable(what: str) -> ErrorBody:
    return ErrorBody(
        503,
        f"{what} is temporarily unavailable; please retry shortly.",
        type="api_error",
        code="service_unavailable",
    )


def not_found(path: str) -> ErrorBody:
    return ErrorBody(
        404,
        f"Unknown route {path[:200]!r}. This gateway serves /v1/chat/completions, "
        "/v1/completions, /v1/messages, /v1/messages/count_tokens, /v1/responses, /v1/embeddings, "
        "/v1/models, /v1/credits and /v1/calls/{call_id}.",
        type="invalid_request_error",
        code="unknown_url",
    )


def method_not_allowed(method: str, allow: str) -> ErrorBody:
    return ErrorBody(
        405,
        f"Method {method[:20]!r} is not allowed here; this path answers {allow}.",
        type="invalid_request_error",
        code="method_not_allowed",
    )


def error_response(
    body: ErrorBody, api: ApiFormat = "openai", headers: dict[str, str] | None = None
) -> Response:
    headers = dict(headers or {})
    if body.retry_after:
        headers["retry-after"] = str(body.retry_after)
    content = body.anthropic() if api == "anthropic" else body.openai()
    return Response(
        orjson.dumps(content),
        status_code=body.status,
        media_type="application/json",
        headers=headers,
    )


def openai_stream_error(body: ErrorBody) -> bytes:
    """The event an OpenAI-format stream ends with when it cannot finish (no [DONE])."""
    return b"data: " + orjson.dumps(body.openai()) + b"\n\n"


def anthropic_error_event(body: ErrorBody) -> bytes:
    return b"event: error\ndata: " + orjson.dumps(body.anthropic()) + b"\n\n"
