"""`POST /v1/messages/count_tokens`: what the Anthropic SDK's `messages.count_tokens`
calls. Authenticated and rate-limited like a call (it takes an RPM entry and, while it
runs, a slot), free (nothing reserved, no usage row), never sent upstream: the count is
LiteLLM's tokenizer, the one reservations use, run in a worker thread so a large prompt
does not hold the event loop. The body is allow-listed as `/v1/messages` content is.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway_plugins import admission, litellm_bridge
from gateway_plugins.errors import error_response, from_domain, service_unavailable
from gateway_plugins.runtime import GatewayRuntime
from gateway_plugins.validation import closing, parse_body, read_body, validate
from portal.errors import GatewayError, UnknownModel

__all__ = ["count_tokens"]

log = logging.getLogger(__name__)


async def count_tokens(runtime: GatewayRuntime, http: Request) -> Response:
    try:
        _identity, slot = await admission.admit(runtime, http.headers)
        try:
            return await _count(runtime, http)
        finally:
            await slot.release()
    except GatewayError as refused:
        return error_response(from_domain(refused), "anthropic", closing(refused))
    except Exception as exc:
        log.error("token count failed: %s", type(exc).__name__)
        return error_response(service_unavailable("Token counting"), "anthropic")


async def _count(runtime: GatewayRuntime, http: Request) -> Response:
    limits = runtime.config.plugin.limits
    seconds = runtime.config.plugin.timeouts.body_seconds
    raw = await read_body(
        http.stream(), http.headers.get("content-length"), limits.max_body_bytes, seconds
    )
    body = parse_body(raw)
    model = body.get("model")
    valid = validate(
        "count_tokens",
        body,
        max_output_tokens=1,
        default_output_tokens=1,
        max_choices=1,
        target=runtime.targets.get(model) if isinstance(model, str) else None,
    )
    if not runtime.config.prices.knows(valid.model):
        raise UnknownModel(f"The model {valid.model!r} does not exist on this gateway.")
    tokens = await asyncio.to_thread(litellm_bridge.count_prompt_tokens, "messages", valid.params)
    return Response(orjson.dumps({"input_tokens": tokens}), media_type="application/json")
