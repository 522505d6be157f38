"""The request pipeline of every metered endpoint, top to bottom:

    authenticate + limit → validate → reserve → call LiteLLM → meter → settle → answer

1. `admission.admit`           token → user (401/403) and RPM / in flight per plan (429):
                               `auth` + `rate_limits`, one Redis round trip for a cached token
2. `validation.validate`       allow-listed, typed body (400, unknown model 404); a
                               refusal here takes back the call's RPM entry and slot
3. `reservation.hold`          TPM counted (429) and estimated credits held (402)
4. `upstream.call`             the Router, under one deadline; a client leaving cancels
                               nothing: the call runs on and is billed (docs/security.md)
5. `metering`                  usage and price of what was answered
6. `settlement.settle`         usage row + debit + release committed (or spooled)
7. answer                      JSON body, or the stream's final event, only after 6,
                               with what 6 debited (`charges`: `usage.cost`, a header)

Refusals in steps 1–3 leave no usage row and hold nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway_plugins import (
    admission,
    input_bounds,
    litellm_bridge,
    metrics,
    reservation,
    token_counting,
    upstream,
)
from gateway_plugins.call import Call, api_of, call_id_header
from gateway_plugins.charges import cost_header, with_cost
from gateway_plugins.errors import error_response, from_domain, service_unavailable
from gateway_plugins.metering import Usage, finished_call, usage_cost_usd, usage_from
from gateway_plugins.response_ids import with_public_response_id
from gateway_plugins.runtime import GatewayRuntime
from gateway_plugins.settlement import settle
from gateway_plugins.streaming import SHUTDOWN, MeteredStream, settled, uncancel
from gateway_plugins.validation import (
    InvalidRequest,
    ValidRequest,
    closing,
    parse_body,
    read_body,
    validate,
)
from portal.credits.pricing import ModelPrice
from portal.db.base import utcnow
from portal.errors import GatewayError, ModelNotPriced, RateLimited, UnknownModel
from portal.observability import context
from portal.usage.models import CallStatus
from portal.usage.settlement import FinishedCall

__all__ = ["handle"]

log = logging.getLogger(__name__)


async def handle(runtime: GatewayRuntime, http: Request, kind: str) -> Response | MeteredStream:
    api = api_of(kind)
    seen: dict[str, Any] = {}
    try:
        call = await _admit(runtime, http, kind, seen)
    except GatewayError as refused:
        metrics.refused(refused.status_code, seen.get("model"))
        log.info("refused %s: %s", refused.status_code, refused.error_code)
        return error_response(from_domain(refused), api, closing(refused))
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
        valid, price, primary = await _validate(runtime, http, kind, seen)
    except BaseException:
        await slot.release(refund=True)  # refused before it started: it costs no RPM
        raise
    call_id = str(uuid.uuid4())
    context.call_id.set(call_id)
    try:
        settings = runtime.config.plugin
        text_tokens = await token_counting.prompt_tokens(kind, valid.params, settings.limits)
        target = runtime.targets.get(valid.model)
        images = {  # each image at its ceiling: with fallbacks, and sent without
            reach: input_bounds.reserved_image_tokens(
                valid.params, settings.credits, valid.model, providers
            )
            for reach, providers in (("all", target.providers if target else ()),
                                     ("own", target.own if target else ()))
        }  # fmt: skip
        await slot.reserve_tokens(text_tokens + images["own"] + valid.output_tokens)  # TPM
        async with runtime.postgres.call():  # past the deadline, or breaker open: 503
            units, fallbacks = await reservation.hold(
                runtime,
                identity.user_id,
                call_id,
                with_fallbacks=reservation.estimate_units(
                    settings, price, text_tokens + images["all"], valid.output_tokens
                ),
                primary_only=reservation.estimate_units(
                    settings, primary, text_tokens + images["own"], valid.output_tokens
                ),
                token_id=identity.token_id,
            )
        if not fallbacks:
            valid.params.update(reservation.NO_FALLBACK)
    except BaseException as refused:
        # the TPM reservation is given back; the RPM entry too unless the caller caused it
        await slot.release(refund=_not_the_callers(refused))
        raise
    prompt_tokens = text_tokens + images["all" if fallbacks else "own"]
    return Call(call_id, kind, identity, valid, units, prompt_tokens, slot, utcnow())


def _not_the_callers(refused: BaseException) -> bool:
    """Whether a refusal after admission takes back the call's RPM entry: a request
    refused as too big (400) or over TPM (429: it was never sent), and any refusal the
    gateway's own dependencies caused (503: the database past its deadline or its breaker
    open). A 402 keeps it."""
    if isinstance(refused, InvalidRequest | RateLimited):
        return True
    return isinstance(refused, Exception) and not isinstance(refused, GatewayError)


async def _validate(
    runtime: GatewayRuntime, http: Request, kind: str, seen: dict[str, Any]
) -> tuple[ValidRequest, ModelPrice, ModelPrice]:
    """Step 2: the body, allow-listed and typed, for a model this gateway prices; with the
    model's price covering its fallbacks, and its own."""
    settings = runtime.config.plugin
    raw = await read_body(
        http.stream(),
        http.headers.get("content-length"),
        settings.limits.max_body_bytes,
        settings.timeouts.body_seconds,
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
    primary = runtime.config.prices.price_of(valid.model)
    if price is None or primary is None:
        raise ModelNotPriced(f"Model {valid.model!r} is not available: it has no price configured.")
    return valid, price, primary


async def _plain(runtime: GatewayRuntime, http: Request, call: Call) -> Response:
    try:
        response = await upstream.call(runtime, http, call)
    except asyncio.CancelledError:  # only the server cancels: a shutdown past its window
        uncancel()
        return await _no_answer(runtime, call, None)
    except Exception as exc:
        return await _no_answer(runtime, call, exc)
    data = litellm_bridge.to_jsonable(response)
    if call.kind == "responses":
        with_public_response_id(data)
    model_id = litellm_bridge.model_id_of(response)
    reported = usage_from(data.get("usage"))
    usage = reported or Usage(prompt=call.estimated_prompt_tokens)
    cost = usage_cost_usd(runtime.router, model_id, usage)
    answered_by = litellm_bridge.group_of(runtime.router, model_id, call.request.model)
    left = call.client_left  # answered after the client left: billed all the same
    charged = await _settle(
        runtime,
        finished_call(
            runtime.config,
            call_id=call.call_id,
            identity=call.identity,
            model_group=answered_by,
            usage=usage,
            cost_usd=cost,
            started_at=call.started_at,
            ended_at=utcnow(),
            status=CallStatus.INCOMPLETE if left else CallStatus.SUCCESS,
            http_status=499 if left else 200,
            error_type="client_gone" if left else None,
        ),
    )
    metrics.answered(answered_by, usage, call.upstream_since)
    await call.slot.release(tokens=usage.total)  # the slot freed, the tokens counted (TPM)
    with_cost(data.get("usage"), charged)
    headers = {**call_id_header(call), **cost_header(charged)}
    return Response(orjson.dumps(data), media_type="application/json", headers=headers)


async def _stream(runtime: GatewayRuntime, http: Request, call: Call) -> Response | MeteredStream:
    try:
        stream = await upstream.open_stream(runtime, http, call)
    except asyncio.CancelledError:  # a shutdown past its window, before the first byte
        uncancel()
        try:
            return await _no_answer(runtime, call, None)
        finally:
            await _done(runtime, call)
    except Exception as exc:
        try:
            return await _no_answer(runtime, call, exc)
        finally:
            await _done(runtime, call)
    except BaseException:
        await _done(runtime, call)
        raise
    return MeteredStream(runtime, call, stream, on_end=_done)


_SHUTDOWN_STATUS = 503
_BILLED_FAILURES = (408, 504, _SHUTDOWN_STATUS)
"""Failures after which the upstream may have worked on the request (a deadline passed
while it did, or the gateway cut it): billed the counted prompt. An upstream that
answered with an error did no billable work."""


async def _no_answer(runtime: GatewayRuntime, call: Call, error: Exception | None) -> Response:
    """The Router gave no answer (`error`), or the gateway shut down first (None): a
    failed-call row, the hold released, the error in the caller's format; the counted
    prompt is billed when the upstream may have worked on it (`_BILLED_FAILURES`)."""
    if error is None:
        failure = litellm_bridge.UpstreamFailure(
            _SHUTDOWN_STATUS, "GatewayShutdown", SHUTDOWN.message
        )
        body = SHUTDOWN
    else:
        failure = litellm_bridge.upstream_failure(error)
        body = upstream.failure_body(failure)
    charged = await _record_failure(runtime, call, failure.status, failure.kind)
    return error_response(body, call.api, {**call_id_header(call), **cost_header(charged)})


async def _record_failure(runtime: GatewayRuntime, call: Call, status: int, kind: str) -> int:
    """A call that produced no answer: a failed-call row, the counted prompt debited if
    the upstream may have worked on it, the hold released. Returns the units debited."""
    metrics.failed(call.request.model, status)
    log.info("call failed upstream: %s %s", status, kind)
    billed = status in _BILLED_FAILURES
    usage = Usage(prompt=call.estimated_prompt_tokens) if billed else Usage()
    charged = await _settle(
        runtime,
        finished_call(
            runtime.config,
            call_id=call.call_id,
            identity=call.identity,
            model_group=call.request.model,
            usage=usage,
            cost_usd=Decimal(0),
            started_at=call.started_at,
            ended_at=utcnow(),
            status=CallStatus.FAILED,
            http_status=status,
            error_type=kind[:100],
        ),
    )
    await call.slot.release(tokens=usage.total)  # TPM corrected to what was billed
    return charged


async def _settle(runtime: GatewayRuntime, record: FinishedCall) -> int:
    """`settle`, carried to its end even if a shutdown cancels the request meanwhile.
    Returns the units debited (the answer says them: `charges`)."""
    await settled(
        asyncio.ensure_future(settle(runtime.database, runtime.spool, record, runtime.postgres))
    )
    return record.credits


async def _done(runtime: GatewayRuntime, call: Call) -> None:
    await call.slot.release()
    runtime.inflight.finished(call.call_id)
