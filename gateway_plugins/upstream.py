"""Step 5: call LiteLLM's Router, under one deadline per request.

The deadline (`workforce_gateway.timeouts.request_seconds`, default 300 s) covers every
retry and fallback the Router makes; a stream must also deliver its first chunk within
`first_byte_seconds` (default 60 s) and then never go quiet for `stream_idle_seconds`
(default 60 s).

Once a request has been sent upstream, the client leaving does not cancel it: the
upstream works (and bills) either way, so a plain call runs on to its answer or the
deadline and is settled from the usage the upstream reports (`pipeline`), and a stream
is read on for its usage (`streaming`). `Call.client_left` says the client is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request

from gateway_plugins import metrics
from gateway_plugins.call import Call
from gateway_plugins.errors import ErrorBody
from gateway_plugins.litellm_bridge import ROUTER_METHODS, UpstreamFailure
from gateway_plugins.runtime import GatewayRuntime

__all__ = ["CLIENT_LEFT_LOG", "call", "failure_body", "open_stream"]

log = logging.getLogger(__name__)

CLIENT_LEFT_LOG = "client left before the answer; the call runs on and is billed"


def _router_call(runtime: GatewayRuntime, call: Call) -> Awaitable[Any]:
    call.upstream_since = metrics.upstream_started()
    method = getattr(runtime.router, ROUTER_METHODS[call.kind])
    pending: Awaitable[Any] = method(**call.request.params, litellm_call_id=call.call_id)
    return pending


async def call(runtime: GatewayRuntime, http: Request, call: Call) -> Any:
    """A plain (non-streamed) answer, or the Router's exception."""
    timeouts = runtime.config.plugin.timeouts
    async with asyncio.timeout(timeouts.request_seconds):
        return await _noting_when_client_leaves(http, call, _router_call(runtime, call))


async def open_stream(runtime: GatewayRuntime, http: Request, call: Call) -> Any:
    """The Router's stream, once it has answered (first byte within its timeout)."""
    timeouts = runtime.config.plugin.timeouts
    async with asyncio.timeout(min(timeouts.first_byte_seconds, timeouts.request_seconds)):
        return await _noting_when_client_leaves(http, call, _router_call(runtime, call))


async def _noting_when_client_leaves(http: Request, call: Call, work: Awaitable[Any]) -> Any:
    """`work`'s answer, awaited in this task, while a watcher notes the client leaving
    (`call.client_left`) without cancelling anything."""

    async def watch() -> None:
        while (await http.receive())["type"] != "http.disconnect":
            pass
        call.client_left = True
        log.info(CLIENT_LEFT_LOG)

    watcher = asyncio.create_task(watch())
    try:
        answer = await work
    finally:
        watcher.cancel()
    if answer is None:  # LiteLLM gave up without raising (litellm_bridge/router.py)
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
