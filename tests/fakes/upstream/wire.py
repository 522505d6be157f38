"""Wire pieces shared by every provider: SSE framing, stream frames, error bodies."""

from __future__ import annotations

import enum
import json
from typing import Any, Literal

from starlette.responses import JSONResponse

Provider = Literal["openai", "anthropic", "gemini", "openrouter"]

DEFAULT_API_KEY = "fake-upstream-key"
DEFAULT_REPLY_TEXT = "Hello from the fake upstream."

# Constant ids in each provider's real shape: real providers' ids may repeat too, so
# code under test must key on LiteLLM's own call id, never on these.
OPENAI_ID = "chatcmpl-FakeUpstream0000000000000000001"
OPENAI_COMPLETION_ID = "cmpl-FakeUpstream00000000000000000001"
OPENAI_RESPONSE_ID = "resp_0fakeupstream000000000000000000000000000000001"
OPENAI_MESSAGE_ID = "msg_0fakeupstream000000000000000000000000000000001"
OPENAI_REASONING_ID = "rs_0fakeupstream0000000000000000000000000000000001"
OPENROUTER_ID = "gen-1700000000-FakeUpstream000001"
ANTHROPIC_ID = "msg_01FakeUpstream00000000000001"
GEMINI_RESPONSE_ID = "FakeUpstreamResponse000001"
SYSTEM_FINGERPRINT = "fp_fakeupstream"
OPENAI_REQUEST_ID = "req_fakeupstream000000000000000001"
ANTHROPIC_REQUEST_ID = "req_011FakeUpstream0000000001"

SSE_MEDIA_TYPE = "text/event-stream; charset=utf-8"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Kind(enum.Enum):
    """Where a stream frame sits; stream faults fire at the first CONTENT/TAIL/LAST frame
    once enough CONTENT frames were sent, so HEAD frames always go out."""

    HEAD = "head"  # before any reply text (role delta, message_start, response.created ...)
    CONTENT = "content"  # carries a piece of the reply text
    TAIL = "tail"  # after the text: finish reason, usage, done markers
    LAST = "last"  # the final frame: calls_served counts the call just before it is sent


Frame = tuple[Kind, bytes]


def sse_data(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def sse_event(event: str, payload: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


# --------------------------------------------------------------------------- error bodies

_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_response(
    provider: Provider, status: int, message: str, *, param: str | None = None
) -> JSONResponse:
    headers: dict[str, str] = {}
    if provider == "openai":
        err_type, code = _OPENAI_ERROR_TYPES.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        body: dict[str, Any] = {
            "error": {"message": message, "type": err_type, "param": param, "code": code}
        }
        headers["x-request-id"] = OPENAI_REQUEST_ID
    elif provider == "openrouter":
        body = {"error": {"message": message, "code": status, "metadata": {}}}
        if status != 401:
            body["user_id"] = "user_fakeupstream"
    elif provider == "anthropic":
        err_type = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        body = {
            "type": "error",
            "error": {"type": err_type, "message": message},
            "request_id": ANTHROPIC_REQUEST_ID,
        }
        headers["request-id"] = ANTHROPIC_REQUEST_ID
        if status in (429, 529):
            headers["retry-after"] = "1"  # LiteLLM does not retry Anthropic calls itself
    else:
        body = {
            "error": {
                "code": status,
                "message": message,
                "status": _GEMINI_STATUSES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN"),
            }
        }
    return JSONResponse(body, status_code=status, headers=headers)


def default_failure_message(status: int, quoted: str) -> str:
    if status == 429:
        return f"Rate limit reached while processing request starting {quoted!r}. Try again later."
    if status >= 500:
        return f"The server had an error while processing the request {quoted!r}."
    return f"Invalid request: the content {quoted!r} could not be processed."


def unauthorized(provider: Provider, key: str | None) -> JSONResponse:
    shown = f"{key[:3]}***{key[-4:]}" if key and len(key) > 8 else "***"
    message = {
        "openai": f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "openrouter": "No auth credentials found" if not key else "User not found.",
        "anthropic": "invalid x-api-key",
        "gemini": "API key not valid. Please pass a valid API key.",
    }[provider]
    return error_response(provider, 401, message)
