"""The request pipeline of every metered endpoint, top to bottom:

    authenticate + limit → validate → reserve → call LiteLLM → meter → settle → answer

1. `auth`                      token → user (401/403)
3. `rate_limits.RateLimiter`   RPM / TPM / calls in flight per plan (429)
   (1 and 3 together in `admission.admit`: one Redis round trip for a cached token)
2. `validation.validate`       allow-listed, typed body (400, unknown model 404); a
                               refusal here takes back the call's RPM entry and slot
4. `reservation.reserve`       estimated credits held in the database (402)
5. `upstream.call`             the Router, under one deadline; cancelled if the client leaves
6. `metering`                  usage and price of what was answered
7. `settlement.settle`         usage row + debit + release committed (or spooled)
8. answer                      JSON body, or the stream's final event, only after 7

Refusals in steps 1–4 leave no usage row and hold nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway_plugins import admission, litellm_bridge, metrics, reservation, upstream
from gateway_plugins.errors import ApiFormat, error_response, from_domain, service_unavailable
from gateway_plugins.metering import Usage, finished_call, usage_cost_usd, usage_from
from gateway_plugins.rate_limits import InFlightSlot
from gateway_plugins.response_ids import with_public_response_id
from gateway_plugins.runtime import GatewayRuntime
from gateway_plugins.settlement import settle
from gateway_plugins.streaming import MeteredStream
from gateway_plugins.validation import ValidRequest, parse_body, read_body, validate
from portal.credits.pricing import ModelPrice
from portal.db.base import utcnow
from portal.errors import GatewayError, ModelNotPriced, UnknownModel
from portal.observability import context
from portal.tokens.service import TokenIdentity
from portal.usage.models import CallStatus

__all__ = ["Call", "handle"]

log = logging.getLogger(__name__)


@dataclass
class Call:
    """One admitted call: who, what, what is held."""

    call_id: str
    kind: str
    identity: TokenIdentity
    request: ValidRequest
    reserved_units: int
    estimated_prompt_tokens: int
    slot: InFlightSlot
    started_at: datetime
    upstream_since: float = 0.0  # time.time() when the Router was called

    @property
    def api(self) -> ApiFormat:
        return api_of(self.kind)


def api_of(kind: str) -> ApiFormat:
    """The error format of an endpoint: Anthropic's on /v1/messages, OpenAI's elsewhere."""
    return "anthropic" if kind == "messages" else "openai"


async def handle(runtime: GatewayRuntime, http: Request, kind: str) -> Response | MeteredStream:
    api = api_of(kind)
    seen: dict[str, Any] = {}
    try:
        call = await _admit(runtime, http, kind, seen)
    except GatewayError as refused:
        metrics.refused(refused.status_code, seen.get("model"))
        log.info("refused %s: %s", refused.status_code, refused.error_code)
        return error_response(from_domain(refused), api)
    except Exception as exc:
        log.error("admission failed: %s", type(exc).__name__)
        return error_response(service_unavailable("The gateway"), api)
    runtime.inflight.started(call.call_id, call.reserved_units)
    if call.request.stream:
        return await _stream(runtime, http, call)
    try:
        return await _plain(runtime, http, call)
    finally:
        await _done(runtime, call)


async def _admit(runtime: GatewayRuntime, http: Request, kind: str, seen: dict[str, Any]) -> Call:
    identity, slot = await admission.admit(runtime, http.headers)
    try:
        valid, price = await _validate(runtime, http, kind, seen)
    except BaseException:
        await slot.release(refund=True)  # refused before it started: it costs no RPM
        raise
    call_id = str(uuid.uuid4())
    context.call_id.set(call_id)
    try:
        prompt_tokens = litellm_bridge.count_prompt_tokens(kind, valid.params)
        settings = runtime.config.plugin
        units = reservation.estimate_units(settings, price, prompt_tokens, valid.output_tokens)
        await reservation.reserve(runtime, identity.user_id, call_id, units)
    except BaseException:
        await slot.release()
        raise
    return Call(call_id, kind, identity, valid, units, prompt_tokens, slot, utcnow())


async def _validate(
    runtime: GatewayRuntime, http: Request, kind: str, seen: dict[str, Any]
) -> tuple[ValidRequest, ModelPrice]:
    """Step 2: the body, allow-listed and typed, for a model this gateway prices."""
    settings = runtime.config.plugin
    raw = await read_body(
        http.stream(), http.headers.get("content-length"), settings.limits.max_body_bytes
    )
    body = parse_body(raw)
    model = seen["model"] = body.get("model")
    valid = validate(
        kind,
        body,
        max_output_tokens=runtime.max_output_tokens(model),
        default_output_tokens=settings.credits.default_max_tokens,
        max_choices=settings.limits.max_choices,
        target=runtime.targets.get(model) if isinstance(model, str) else None,
    )
    if not runtime.config.prices.knows(valid.model):
        raise UnknownModel(
            f"The model {valid.model!r} does not exist on this gateway; GET /v1/models lists them."
        )
    price = runtime.config.reservation_prices.price_of(valid.model)
    if price is None:
        raise ModelNotPriced(f"Model {valid.model!r} is not available: it has no price configured.")
    return valid, price


async def _plain(runtime: GatewayRuntime, http: Request, call: Call) -> Response:
    try:
        response = await upstream.call(runtime, http, call)
    except Exception as exc:
        return await _no_answer(runtime, call, exc)
    data = litellm_bridge.to_jsonable(response)
    if call.kind == "responses":
        with_public_response_id(data)
    model_id = litellm_bridge.model_id_of(response)
    reported = usage_from(data.get("usage"))
    usage = reported or Usage(prompt=call.estimated_prompt_tokens)
    cost = usage_cost_usd(runtime.router, model_id, reported) if reported else Decimal(0)
    answered_by = litellm_bridge.group_of(runtime.router, model_id, call.request.model)
    await settle(
        runtime.database,
        runtime.spool,
        finished_call(
            runtime.config,
            call_id=call.call_id,
            identity=call.identity,
            model_group=answered_by,
            usage=usage,
            cost_usd=cost,
            started_at=call.started_at,
            ended_at=utcnow(),
        ),
    )
    metrics.answered(answered_by, usage, call.upstream_since)
    await call.slot.release(tokens=usage.total)  # the slot freed, the tokens counted (TPM)
    return Response(orjson.dumps(data), media_type="application/json", headers=call_id_header(call))


async def _stream(runtime: GatewayRuntime, http: Request, call: Call) -> Response | MeteredStream:
    try:
        stream = await upstream.open_stream(runtime, http, call)
    except Exception as exc:
        try:
            return await _no_answer(runtime, call, exc)
        finally:
            await _done(runtime, call)
    except BaseException:
        await _done(runtime, call)
        raise
    return MeteredStream(runtime, call, stream, on_end=_done)


async def _no_answer(runtime: GatewayRuntime, call: Call, error: Exception) -> Response:
    """The Router gave no answer (or the client left first): a failed-call row, nothing
    debited, the hold released, and the error in the caller's format."""
    if isinstance(error, upstream.ClientGone):
        await _record_failure(runtime, call, 499, "ClientDisconnected")
        return Response(status_code=499)
    failure = litellm_bridge.upstream_failure(error)
    await _record_failure(runtime, call, failure.status, failure.kind)
    return error_response(upstream.failure_body(failure), call.api, call_id_header(call))


CALL_ID_HEADER = "x-litellm-call-id"  # kept from the proxy days: clients match usage rows by it


def call_id_header(call: Call) -> dict[str, str]:
    return {CALL_ID_HEADER: call.call_id}


async def _record_failure(runtime: GatewayRuntime, call: Call, status: int, kind: str) -> None:
    """A call that produced no answer: a failed-call row, nothing debited, hold released."""
    metrics.failed(call.request.model, status)
    log.info("call failed upstream: %s %s", status, kind)
    now = utcnow()
    await settle(
        runtime.database,
        runtime.spool,
        finished_call(
            runtime.config,
            call_id=call.call_id,
            identity=call.identity,
            model_group=call.request.model,
            usage=Usage(),
            cost_usd=Decimal(0),
            started_at=call.started_at,
            ended_at=now,
            status=CallStatus.FAILED,
            http_status=status,
            error_type=kind[:100],
        ),
    )


async def _done(runtime: GatewayRuntime, call: Call) -> None:
    await call.slot.release()
    runtime.inflight.finished(call.call_id)
