"""Patch: no retry or fallback takes over a stream once part of it reached the client.

The Router wraps every stream it returns (`router_rust.invoke.streaming`): when the stream
fails, the wrapper may retry it in its group or hand it to the fallback group
(`StreamAttempt.retry` / `StreamAttempt.fallback`), and splice what that call streams into
the stream the caller already holds. Before any of it reached the client that is a
fallback like any other. After, it is not: the client gets the start of an answer twice
(a `/v1/responses` stream on Claude, cut after its first words, was continued on
gpt-4o-mini: a second `response.created`, and the content went to a second provider), and
the first provider's work is billed to no one. LiteLLM decides "after" by its own counts
(text generated, events held), which differ per API: chat after its first chunk without
text, and Responses after text (its continuation fallback ignores
`enable_mid_stream_fallback_continuation`, which `router.build_router` forces off for
chat).

The gateway says when bytes went out: `stream_delivered()` marks the current task's call
(a ContextVar; the Router's stream wrapper runs in the task that reads it) once the relay
has a frame for the client. From then on `StreamAttempt.retry` answers "no retry ran"
(the failure itself) and `StreamAttempt.fallback` raises the failure: the wrapper raises
the provider's error, the relay ends with the API's error event and settles what was
delivered (`streaming`).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from litellm.router_rust.invoke.streaming import StreamAttempt

__all__ = ["keep_delivered_streams_on_their_deployment", "stream_delivered"]

_delivered: ContextVar[bool] = ContextVar("wfg_stream_delivered", default=False)
_retry = StreamAttempt.retry
_fallback = StreamAttempt.fallback


def stream_delivered() -> None:
    """Part of this task's stream reached the client: nothing may take it over now."""
    _delivered.set(True)


async def _retry_unless_delivered(self: StreamAttempt, trigger: BaseException) -> Any:
    if _delivered.get():
        return trigger  # what `retry` returns when no retry ran
    return await _retry(self, trigger)


async def _fallback_unless_delivered(
    self: StreamAttempt, trigger: BaseException, request: Any = None
) -> Any:
    if _delivered.get():
        raise trigger
    return await _fallback(self, trigger, request)


def keep_delivered_streams_on_their_deployment() -> None:
    StreamAttempt.retry = _retry_unless_delivered  # type: ignore[method-assign]
    StreamAttempt.fallback = _fallback_unless_delivered  # type: ignore[method-assign]
