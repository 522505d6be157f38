"""The gateway's Prometheus metrics (served at `/metrics`). Labels are bounded: `model` is
a model group from config.yaml or "other", `status` a status code or its class, `reason`
401/402/403/404/429, `outcome` how a stream ended. No label or value carries content."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from portal.credits.units import UNITS_PER_CREDIT
from portal.observability import context
from portal.observability.metrics import bounded, counter, gauge, histogram, status_class

if TYPE_CHECKING:
    from gateway_plugins.metering import Usage
    from portal.usage.settlement import FinishedCall

__all__ = [
    "CREDITS_DEBITED",
    "INFLIGHT_CALLS",
    "REFUSALS",
    "REQUESTS",
    "RESERVED_UNITS",
    "USAGE_SPOOLED",
    "USAGE_WRITE_FAILURES",
    "answered",
    "configure",
    "failed",
    "record_settled",
    "refused",
    "slow_client",
    "upstream_started",
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
STREAM_ENDS = counter(
    "wfg_gateway_stream_ends_total",
    "How streams ended: complete, client_gone, upstream_stream_cut, upstream_timeout, …",
    ("outcome",),
)
CREDITS_DEBITED = counter(
    "wfg_gateway_credits_debited_total", "Credits debited for answered calls, by model.",
    ("model",),
)  # fmt: skip
REFUSALS = counter(
    "wfg_gateway_refusals_total",
    "Calls refused by the gateway: 401 token, 402 credits, 403 account, 404 model, 429 limit.",
    ("reason",),
)
UPSTREAM_LATENCY = histogram(
    "wfg_gateway_upstream_latency_seconds",
    "From the upstream call's start to its last byte (streams: the whole stream), by model.",
    ("model",),
)
ADDED_LATENCY = histogram(
    "wfg_gateway_added_latency_seconds",
    "Time the gateway adds before the upstream call starts: auth, validation, limits, reservation.",
)
RESERVED_UNITS = gauge(
    "wfg_gateway_reserved_units", "Ledger units held by reservations of calls in flight."
)
INFLIGHT_CALLS = gauge("wfg_gateway_inflight_calls", "Calls admitted and not finished yet.")
USAGE_WRITE_FAILURES = counter(
    "wfg_gateway_usage_write_failures_total", "Failed attempts to write a call's usage + debit."
)
USAGE_SPOOLED = counter(
    "wfg_gateway_usage_spooled_total", "Settlements written to the disk spool for later replay."
)
SLOW_CLIENTS = counter(
    "wfg_gateway_slow_clients_total",
    "Connections closed because the request's headers or body came too slowly.",
    ("part",),
)

_models: frozenset[str] = frozenset()
_PARTS = frozenset({"headers", "body"})
_REFUSAL_REASONS = frozenset({"400", "401", "402", "403", "404", "429"})
_OUTCOMES = frozenset(
    {"complete", "client_gone", "upstream_stream_cut", "upstream_timeout", "upstream_error"}
)


def configure(model_names: list[str]) -> None:
    global _models
    _models = frozenset(model_names)


def _model(name: str | None) -> str:
    return bounded(name, _models)


def refused(status: int, model: object) -> None:
    REQUESTS.labels(_model(model if isinstance(model, str) else None), status_class(status)).inc()
    REFUSALS.labels(bounded(str(status), _REFUSAL_REASONS)).inc()


def upstream_started() -> float:
    """Note the gateway's own share of the latency; returns the upstream start time."""
    now = time.time()
    arrived = context.request_started.get()
    if arrived is not None:
        ADDED_LATENCY.observe(max(now - arrived, 0.0))
    return now


def answered(model: str, usage: Usage, upstream_since: float, outcome: str | None = None) -> None:
    label = _model(model)
    REQUESTS.labels(label, "200").inc()
    UPSTREAM_LATENCY.labels(label).observe(max(time.time() - upstream_since, 0.0))
    TOKENS.labels(label, "in").inc(usage.prompt)
    TOKENS.labels(label, "out").inc(usage.completion)
    if outcome is not None:
        STREAM_ENDS.labels(bounded(outcome, _OUTCOMES)).inc()


def slow_client(part: str) -> None:
    """A connection closed for its headers (`sockets`) or body (`validation`) coming slowly."""
    SLOW_CLIENTS.labels(bounded(part, _PARTS)).inc()


def failed(model: str, status: int) -> None:
    REQUESTS.labels(_model(model), status_class(status)).inc()


def record_settled(call: FinishedCall) -> None:
    if call.credits > 0:
        CREDITS_DEBITED.labels(_model(call.model)).inc(call.credits / UNITS_PER_CREDIT)
