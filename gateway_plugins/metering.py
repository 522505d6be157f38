"""Where a call's credits are reserved (before) and debited (after).

`CreditMeter` is a LiteLLM `CustomLogger`, wired in config.yaml under
`litellm_settings.callbacks`:
- `async_pre_call_hook`: refuse unpriced models and oversize requests, reserve the
  estimated cost (402 when the available balance does not cover it);
- `async_log_success_event`: one usage record + one debit keyed by LiteLLM's call id,
  the reservation released, all in one transaction;
- `async_post_call_failure_hook`: release the reservation, record a failed-call row;
- `async_post_call_streaming_iterator_hook`: count what a stream sends (`stream_tally`),
  so a stream the client cuts is charged for the output it got.

LiteLLM swallows exceptions raised in success callbacks, so settlement retries and then
spools the call to disk (`portal.usage.spool`) rather than lose the debit. Settlements
run as tasks tracked by `gateway_plugins.shutdown.inflight`, so a shutdown waits for
them and LiteLLM's callback timeout cannot cancel one halfway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import UserAPIKeyAuth

from gateway_plugins.estimates import output_allowance, prompt_tokens, reservation_units
from gateway_plugins.metrics import USAGE_SPOOLED, USAGE_WRITE_FAILURES, record_debit
from gateway_plugins.proxy_errors import service_unavailable, to_proxy_exception
from gateway_plugins.runtime import GatewayRuntime, get_runtime
from gateway_plugins.shutdown import inflight
from gateway_plugins.stream_tally import stream_tally
from portal.credits import reservations
from portal.credits.units import usd_to_units
from portal.errors import GatewayError, ModelNotPriced, UnknownModel
from portal.observability import context
from portal.usage.models import CallStatus
from portal.usage.settlement import FinishedCall, settle_call

__all__ = ["CreditMeter", "credit_meter"]

log = logging.getLogger(__name__)

SETTLE_ATTEMPTS = 3
# Request fields a client could use to set its own price or skip the upstream.
_CLIENT_PRICING_KEYS = (
    "mock_response",
    "mock_testing_fallbacks",
    "model_info",
    "api_base",
    "base_url",
)


class CreditMeter(CustomLogger):
    async def async_pre_call_hook(
        self, user_api_key_dict: UserAPIKeyAuth, cache: Any, data: dict, call_type: str
    ) -> dict:
        user_id = user_api_key_dict.user_id
        call_id = data.get("litellm_call_id")
        if not user_id or not call_id:
            return data
        context.call_id.set(str(call_id))  # log lines of this request name the call
        runtime = get_runtime()
        for key in [k for k in data if k in _CLIENT_PRICING_KEYS or "cost" in k]:
            data.pop(key, None)
        try:
            amount = self._estimate(runtime, data)
            async with runtime.database.transaction() as session:
                await reservations.reserve(
                    session,
                    user_id=user_id,
                    call_id=call_id,
                    amount=amount,
                    ttl_seconds=runtime.config.plugin.credits.reservation_ttl_seconds,
                )
        except GatewayError as refused:
            raise to_proxy_exception(refused) from None
        except Exception as exc:
            log.error("credit reservation failed: %s", type(exc).__name__)
            raise service_unavailable("Credit check") from None
        inflight.reserved(call_id, amount)
        inflight.forget_older_than(runtime.config.plugin.credits.reservation_ttl_seconds)
        return data

    @staticmethod
    def _estimate(runtime: GatewayRuntime, data: dict) -> int:
        model = str(data.get("model") or "")
        if not runtime.config.prices.knows(model):
            raise UnknownModel(
                f"The model {model!r} does not exist on this gateway; GET /v1/models lists them."
            )
        price = runtime.config.reservation_prices.price_of(model)
        if price is None:
            raise ModelNotPriced(
                f"Model {model!r} is not available: it has no price configured on this gateway."
            )
        plugin = runtime.config.plugin
        tokens_out = output_allowance(data, plugin)
        if tokens_out > plugin.limits.max_request_tokens:
            raise GatewayError(
                f"max_tokens may be at most {plugin.limits.max_request_tokens} on this gateway."
            )
        return reservation_units(price, prompt_tokens(data), tokens_out, plugin)

    async def async_log_success_event(
        self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        call = self._finished_call(kwargs, status=CallStatus.SUCCESS)
        if call is not None:
            await inflight.settle(call, self._settle)

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: UserAPIKeyAuth, response: Any, request_data: dict
    ) -> AsyncGenerator[Any, None]:
        call_id = request_data.get("litellm_call_id")
        if not call_id or not user_api_key_dict.user_id:
            async for chunk in response:
                yield chunk
            return
        sent = stream_tally.open(str(call_id))
        async for chunk in response:
            sent.add(chunk)
            yield chunk

    async def async_post_call_failure_hook(
        self,
        request_data: dict,
        original_exception: Exception,
        user_api_key_dict: UserAPIKeyAuth,
        traceback_str: str | None = None,
    ) -> None:
        call_id = request_data.get("litellm_call_id")
        user_id = user_api_key_dict.user_id
        if not call_id or not user_id:
            return
        stream_tally.take_tokens(str(call_id))  # forget a counted stream
        now = datetime.now(UTC)
        status = getattr(original_exception, "status_code", None) or getattr(
            original_exception, "code", None
        )
        call = FinishedCall(
            call_id=call_id,
            user_id=user_id,
            token_id=_token_id(user_api_key_dict.metadata),
            model=str(request_data.get("model") or "")[:200],
            status=CallStatus.FAILED,
            started_at=now,
            ended_at=now,
            http_status=int(status) if str(status).isdigit() else None,
            error_type=type(original_exception).__name__[:100],
        )
        runtime = get_runtime()
        try:
            async with runtime.database.transaction() as session:
                # Only calls that got past the pre-call check hold a reservation; refusals
                # (401/402/…) leave no usage row.
                if await reservations.release(session, call_id):
                    await settle_call(session, call)
        except Exception as exc:
            log.error("failed-call bookkeeping failed: %s", type(exc).__name__)
        finally:
            inflight.finished(call_id)

    async def _settle(self, call: FinishedCall) -> None:
        runtime = get_runtime()
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                async with runtime.database.transaction() as session:
                    settled = await settle_call(session, call)
                if settled:
                    record_debit(call.model, call.credits)
                return
            except Exception as exc:
                USAGE_WRITE_FAILURES.inc()
                log.warning(
                    "usage settlement attempt %d failed: %s", attempt + 1, type(exc).__name__
                )
                await asyncio.sleep(0.2 * 2**attempt)
        runtime.spool.append(call)
        USAGE_SPOOLED.inc()
        log.error("usage settlement spooled to disk for replay (call %s)", call.call_id)

    @staticmethod
    def _finished_call(kwargs: dict, *, status: str) -> FinishedCall | None:
        payload = kwargs.get("standard_logging_object") or {}
        metadata = (kwargs.get("litellm_params") or {}).get("metadata") or {}
        user_id = metadata.get("user_api_key_user_id")
        call_id = kwargs.get("litellm_call_id") or payload.get("litellm_call_id")
        if not user_id or not call_id:
            return None  # not a gateway-user call (e.g. a health check)
        runtime = get_runtime()
        model_group = str(payload.get("model_group") or metadata.get("model_group") or "")
        tokens_in = int(payload.get("prompt_tokens") or 0)
        tokens_out = int(payload.get("completion_tokens") or 0)
        price = runtime.config.prices.price_of(model_group)
        # A stream the client cut is billed from what its chunks reported, which can be
        # nothing yet (Gemini reports output in its last chunk): charge what was sent.
        sent_tokens = stream_tally.take_tokens(str(call_id))
        unreported = sent_tokens - tokens_out if metadata.get("client_disconnected") else 0
        tokens_out += max(unreported, 0)
        cost_usd = Decimal(str(payload.get("response_cost") or 0))
        if cost_usd <= 0 and (tokens_in or tokens_out):
            # LiteLLM prices unknown models at 0: never serve free, use our price book.
            cost_usd = price.cost_usd(tokens_in, tokens_out) if price else Decimal(0)
            if price is None:
                log.error("no price for model group %r; call recorded at 0", model_group)
        elif unreported > 0 and price is not None:
            cost_usd += price.output_per_token * unreported
        credits_settings = runtime.config.plugin.credits
        details = _usage_details(payload)
        return FinishedCall(
            call_id=str(call_id),
            user_id=str(user_id),
            token_id=_token_id(metadata.get("user_api_key_metadata")),
            model=model_group[:200] or str(payload.get("model") or "")[:200],
            status=status,
            started_at=_timestamp(payload.get("startTime")),
            ended_at=_timestamp(payload.get("endTime")),
            prompt_tokens=tokens_in,
            completion_tokens=tokens_out,
            cached_tokens=details["cached_tokens"],
            reasoning_tokens=details["reasoning_tokens"],
            upstream_cost_nano_usd=int(cost_usd * 1_000_000_000),
            credits=usd_to_units(
                cost_usd,
                usd_per_credit=credits_settings.usd_per_credit,
                markup=credits_settings.markup,
            ),
        )


def _token_id(metadata: Any) -> str | None:
    if isinstance(metadata, dict):
        value = metadata.get("wfg_token_id")
        return str(value) if value else None
    return None


def _timestamp(value: Any) -> datetime:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return datetime.now(UTC)


def _usage_details(payload: dict) -> dict[str, int]:
    usage = (payload.get("metadata") or {}).get("usage_object") or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {
        "cached_tokens": int(prompt_details.get("cached_tokens") or 0),
        "reasoning_tokens": int(completion_details.get("reasoning_tokens") or 0),
    }


credit_meter = CreditMeter()
