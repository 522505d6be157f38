"""The Prometheus registry both services expose at `/metrics`, safe with several workers.

With `PROMETHEUS_MULTIPROC_DIR` set (required when a service runs more than one worker
process; an empty directory, wiped at each start), every worker writes its samples there
and `/metrics` aggregates all of them; otherwise samples live in this process. Our
metrics have their own registry, so nothing another library registers is exposed.

Labels take values from bounded sets only (`bounded`, `status_class`): model names from
config.yaml, status codes, refusal reasons. Never a user id, token, call id or content.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "LATENCY_BUCKETS",
    "OTHER",
    "REGISTRY",
    "bounded",
    "counter",
    "gauge",
    "histogram",
    "render",
    "status_class",
]

M = TypeVar("M", bound=MetricWrapperBase)
# No `*_created` series: they double the exposition for nothing. (prometheus_client
# leaves this function unannotated, hence the ignore.)
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
OTHER = "other"
# Seconds: from a millisecond of overhead to a long streamed answer.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)


# LiteLLM loads a callback module named in config.yaml from its file when the file sits
# beside config.yaml, i.e. a second time under the same name; metrics are created once.
_CREATED: dict[str, MetricWrapperBase] = {}


def _once(name: str, kind: type[M], make: Callable[[], M]) -> M:
    metric = _CREATED.get(name)
    if metric is None:
        metric = _CREATED[name] = make()
    if not isinstance(metric, kind):
        raise TypeError(f"metric {name!r} already exists as a {type(metric).__name__}")
    return metric


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    return _once(name, Counter, lambda: Counter(name, documentation, labels, registry=REGISTRY))


def histogram(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> Histogram:
    return _once(
        name,
        Histogram,
        lambda: Histogram(name, documentation, labels, registry=REGISTRY, buckets=buckets),
    )


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    # livesum: across workers, the sum over the processes still running.
    return _once(
        name,
        Gauge,
        lambda: Gauge(name, documentation, labels, registry=REGISTRY, multiprocess_mode="livesum"),
    )


def bounded(value: str | None, allowed: Iterable[str]) -> str:
    """`value` if it is one of `allowed`, else "other": a label can never grow unbounded."""
    return value if value is not None and value in allowed else OTHER


def status_class(status: int | None) -> str:
    """`"429"` for the codes we name, `"5xx"`-style classes for the rest."""
    if status in (200, 400, 401, 402, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504):
        return str(status)
    if status is None or not 100 <= status < 600:
        return "unknown"
    return f"{status // 100}xx"


def render() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    # prometheus_client chose where samples go from the process environment at import;
    # read the same place (not a setting: a `.env` value would not reach the library).
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        # prometheus_client leaves the collector's __init__ unannotated.
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
