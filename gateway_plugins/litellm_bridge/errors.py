"""LiteLLM's exceptions as what the client sees.

Relied on: exceptions carry `status_code` (an upstream's, or LiteLLM's own) and a
`message`; timeouts are `litellm.exceptions.Timeout`. The gateway maps statuses, not
classes: an upstream 401/403/413 LiteLLM does not recognise is a `BadRequestError` that
keeps its status.
"""

from __future__ import annotations

from litellm.exceptions import Timeout as LiteLLMTimeout

__all__ = ["UpstreamFailure", "upstream_failure"]


class UpstreamFailure(Exception):
    """An upstream or routing failure, as the client should see it."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(kind)
        self.status = status
        self.kind = kind  # the LiteLLM exception class name (metrics, logs)
        self.message = message


_STATUS_MESSAGES = {
    401: "The upstream provider refused the gateway's credentials.",
    403: "The upstream provider refused the request.",
    404: "The upstream provider does not know this model or endpoint.",
    408: "The upstream provider timed out.",
    429: "The upstream provider is rate limiting; retry shortly.",
}


def upstream_failure(error: BaseException) -> UpstreamFailure:
    """Map a LiteLLM exception to what the client gets. A 4xx keeps LiteLLM's message (the
    caller's own request described back to the caller); anything else gets a fixed text,
    since it may name the operator's upstream. Never logged with its message."""
    if isinstance(error, UpstreamFailure):
        return error
    status = getattr(error, "status_code", None)
    kind = type(error).__name__
    if not isinstance(status, int) or not 400 <= status <= 599:
        status = 504 if isinstance(error, LiteLLMTimeout | TimeoutError) else 502
    message = getattr(error, "message", None)
    if status in (400, 413, 422) and isinstance(message, str):
        return UpstreamFailure(status, kind, _client_message(message))
    if status >= 500 or status not in _STATUS_MESSAGES:
        message = "The upstream provider failed to answer; retry shortly."
        return UpstreamFailure(502 if status < 500 else status, kind, message)
    return UpstreamFailure(status, kind, _STATUS_MESSAGES[status])


def _client_message(message: str) -> str:
    for prefix in ("litellm.BadRequestError: ", "litellm.UnprocessableEntityError: "):
        message = message.removeprefix(prefix)
    return message[:2000]
