"""Step 5: call LiteLLM's Router, under one deadline per request.

The deadline (`workforce_gateway.timeouts.request_seconds`, default 300 s) covers every
retry and fallback the Router makes; a stream must also deliver its first chunk within
`first_byte_seconds` (default 60 s) and then never go quiet for `stream_idle_seconds`
(default 60 s). A plain call is raced against the client's disconnect: when the client
leaves, the upstream call is cancelled (its HTTP request closed) and the hold released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from gateway_plugins import metrics
from gateway_plugins.errors import ErrorBody
from gateway_plugins.litellm_bridge import ROUTER_METHODS, UpstreamFailure
from gateway_plugins.runtime import GatewayRuntime

if TYPE_CHECKING:
    from gateway_plugins.pipeline import Call

__all__ = ["ClientGone", "call", "failure_body", "open_stream"]


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


def _router_call(runtime: GatewayRuntime, call: Call) -> Awaitable[Any]:
    call.upstream_since = metrics.upstream_started()
    method = getattr(runtime.router, ROUTER_METHODS[call.kind])
    pending: Awaitable[Any] = method(**call.request.params, litellm_call_id=call.call_id)
    return pending


async def call(runtime: GatewayRuntime, http: Request, call: Call) -> Any:
    """A plain (non-streamed) answer, or the Router's exception."""
    timeouts = runtime.config.plugin.timeouts
    async with asyncio.timeout(timeouts.request_seconds):
        return await _unless_client_leaves(http, _router_call(runtime, call))


async def open_stream(runtime: GatewayRuntime, http: Request, call: Call) -> Any:
    """The Router's stream, once it has answered (first byte within its timeout)."""
    timeouts = runtime.config.plugin.timeouts
    async with asyncio.timeout(min(timeouts.first_byte_seconds, timeouts.request_seconds)):
        return await _unless_client_leaves(http, _router_call(runtime, call))


async def _unless_client_leaves(http: Request, work: Awaitable[Any]) -> Any:
    """`work`'s answer, awaited in this task; a watcher cancels it when the client leaves
    (one task per call: racing `work` as a task of its own cost a second one and
    `asyncio.wait`'s bookkeeping)."""
    caller = asyncio.current_task()
    assert caller is not None
    left = False

    async def watch() -> None:
        nonlocal left
        while (await http.receive())["type"] != "http.disconnect":
            pass
        left = True
        caller.cancel()

    watcher = asyncio.create_task(watch())
    try:
        answer = await work
    except asyncio.CancelledError:
        if not left:
            raise
        caller.uncancel()  # our own cancellation, not the server's or the deadline's
        raise ClientGone from None
    finally:
        watcher.cancel()
    if answer is None:  # LiteLLM gave up without raising (litellm_bridge docstring)
        raise UpstreamFailure(502, "NoAnswer", "The upstream provider failed to answer.")
    return answer


# An upstream 4xx's own text can quote the operator's key, upstream URL or deployment
# name (a provider echoing its Authorization header, a proxy naming its route): the
# client gets a fixed text per status instead, never the upstream's words.
_FIXED_4XX = {
    400: "The upstream provider refused the request as invalid (HTTP 400); check its "
    "parameters, content and size against the model.",
    413: "The upstream provider refused the request as too large (HTTP 413).",
    422: "The upstream provider could not process the request (HTTP 422); check its "
    "parameters against the model.",
}


def failure_body(failure: UpstreamFailure) -> ErrorBody:
    """The client's error for an upstream failure: fixed texts only (`_FIXED_4XX`, and
    `litellm_bridge`'s for every other status)."""
    message = _FIXED_4XX.get(failure.status, failure.message)
    kind = "timeout" if failure.status in (408, 504) else "upstream_error"
    error_type = "invalid_request_error" if failure.status < 500 else "api_error"
    if failure.status == 429:
        error_type = "rate_limit_error"
    return ErrorBody(failure.status, message, type=error_type, code=kind)
