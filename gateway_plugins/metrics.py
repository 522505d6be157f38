"""The gateway's Prometheus metrics, and the LiteLLM callback that counts calls.

`GatewayMetrics` is wired in config.yaml under `litellm_settings.callbacks` (after the
content scrubber). It sees every answered call (success event) and every refused or
failed one (LiteLLM's post-call failure hook runs for auth errors, pre-call refusals
and upstream errors alike). Metering adds credits debited, usage-write failures and
the spool; `shutdown.InFlight` keeps the reservation gauges.

Labels: `model` is a model name from config.yaml or "other"; `status` a status code
from a fixed list or its class; `reason` 401, 402, 403 or 429. LiteLLM has its own
Prometheus integration (partly enterprise-gated); this one is separate and is served at
`/metrics` by `gateway_plugins.server`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException, UserAPIKeyAuth
from litellm.proxy.common_utils.proxy_rate_limit_error import ProxyRateLimitError

from gateway_plugins.runtime import get_runtime
from portal.credits.units import UNITS_PER_CREDIT
from portal.observability import context
from portal.observability.metrics import bounded, counter, gauge, histogram, status_class

__all__ = [
    "CREDITS_DEBITED",
    "INFLIGHT_CALLS",
    "REFUSALS",
    "RESERVED_UNITS",
    "USAGE_SPOOLED",
    "USAGE_WRITE_FAILURES",
    "GatewayMetrics",
    "gateway_metrics",
    "model_label",
    "record_debit",
]

log = logging.getLogger(__name__)

REQUESTS = counter(
    "wfg_gateway_requests_total", "Gateway calls by model and response status.",
    ("model", "status"),
)  # fmt: skip
TOKENS = counter(
    "wfg_gateway_tokens_total", "Tokens of answered calls, by model and direction (in/out).",
    ("model", "direction"),
)  # fmt: skip
CREDITS_DEBITED = counter(
    "wfg_gateway_credits_debited_total", "Credits debited for answered calls, by model.",
    ("model",),
)  # fmt: skip
REFUSALS = counter(
    "wfg_gateway_refusals_total",
    "Calls refused by the gateway: 401 token, 402 credits, 403 account, 429 rate limit.",
    ("reason",),
)
RESERVED_UNITS = gauge(
    "wfg_gateway_reserved_units", "Ledger units held by reservations of calls in flight."
)
INFLIGHT_CALLS = gauge(
    "wfg_gateway_inflight_calls", "Calls holding a reservation that are not settled yet."
)
UPSTREAM_LATENCY = histogram(
    "wfg_gateway_upstream_latency_seconds",
    "From the upstream call's start to its last byte (streams: the whole stream), by model.",
    ("model",),
)
ADDED_LATENCY = histogram(
    "wfg_gateway_added_latency_seconds",
    "Time the gateway adds before the upstream call starts: auth, limits, reservation,"
    " routing (with retries/fallbacks, earlier failed attempts too).",
)
USAGE_WRITE_FAILURES = counter(
    "wfg_gateway_usage_write_failures_total", "Failed attempts to write a call's usage + debit."
)
USAGE_SPOOLED = counter(
    "wfg_gateway_usage_spooled_total", "Settlements written to the disk spool for later replay."
)


def model_label(model: Any) -> str:
    return bounded(str(model) if model else None, get_runtime().config.model_names)


def record_debit(model: str, units: int) -> None:
    try:
        if units > 0:
            CREDITS_DEBITED.labels(model_label(model)).inc(units / UNITS_PER_CREDIT)
    except Exception as exc:  # never let a metric fail a settlement
        log.debug("debit metric skipped: %s", type(exc).__name__)


class GatewayMetrics(CustomLogger):
    async def async_log_success_event(
        self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        try:
            self._answered(kwargs, end_time)
        except Exception as exc:  # metrics must never cost a call anything
            log.debug("success metrics skipped: %s", type(exc).__name__)

    def _answered(self, kwargs: dict, end_time: Any) -> None:
        payload = kwargs.get("standard_logging_object") or {}
        model = model_label(payload.get("model_group"))
        REQUESTS.labels(model, "200").inc()
        TOKENS.labels(model, "in").inc(int(payload.get("prompt_tokens") or 0))
        TOKENS.labels(model, "out").inc(int(payload.get("completion_tokens") or 0))
        upstream_start = kwargs.get("api_call_start_time")
        if not isinstance(upstream_start, datetime):
            return
        if isinstance(end_time, datetime):
            seconds = (end_time - upstream_start).total_seconds()
            UPSTREAM_LATENCY.labels(model).observe(max(seconds, 0.0))
        arrived = context.request_started.get()
        if arrived is not None:
            ADDED_LATENCY.observe(max(upstream_start.timestamp() - arrived, 0.0))

    async def async_post_call_failure_hook(
        self,
        request_data: dict,
        original_exception: Exception,
        user_api_key_dict: UserAPIKeyAuth,
        traceback_str: str | None = None,
    ) -> None:
        try:
            status = _status_of(original_exception)
            REQUESTS.labels(model_label(request_data.get("model")), status_class(status)).inc()
            if (reason := _refusal(original_exception, status)) is not None:
                REFUSALS.labels(reason).inc()
        except Exception as exc:
            log.debug("failure metrics skipped: %s", type(exc).__name__)


def _refusal(error: Exception, status: int | None) -> str | None:
    """The gateway's own refusals only (an upstream's 401/429 is a failure, not ours)."""
    if isinstance(error, ProxyRateLimitError):
        return "429"
    if isinstance(error, ProxyException) and status in (401, 402, 403):
        return str(status)
    return None


def _status_of(error: Exception) -> int | None:
    for attribute in ("status_code", "code"):
        value = getattr(error, attribute, None)
        try:
            return int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    return None


gateway_metrics = GatewayMetrics()
