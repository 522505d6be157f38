"""Short calls first (gateway_plugins/fairness.py): a relaying stream takes short slices
while other requests are open, full collections wait while streams relay, and the bench's
switch puts each back. How much it changes is measured in bench/RESULTS.md ("Long
streams", Fairness); here only which way each setting goes."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from gateway_plugins import fairness


@pytest.fixture(autouse=True)
def default_switches() -> Iterator[None]:
    fairness.configure("")
    threshold = gc.get_threshold()
    yield
    fairness.configure("")
    gc.set_threshold(*threshold)


def _slice_during_a_request() -> float:
    """`slice_seconds()` as a stream would see it while one request is being served."""
    seen: list[float] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(fairness.slice_seconds())

    async def serve() -> None:
        await fairness.CountRequests(app)({"type": "http"}, None, None)

    asyncio.run(serve())
    return seen[0]


def test_a_stream_alone_keeps_the_long_slice() -> None:
    assert fairness.slice_seconds() == fairness.LONG_SLICE_SECONDS


def test_another_request_open_shortens_the_slice_and_only_while_open() -> None:
    assert _slice_during_a_request() == fairness.SHARED_SLICE_SECONDS
    assert fairness.slice_seconds() == fairness.LONG_SLICE_SECONDS


def test_a_request_that_is_itself_relaying_a_burst_is_no_other_call() -> None:
    fairness.relay_started()  # the stream serving that one request
    try:
        assert _slice_during_a_request() == fairness.LONG_SLICE_SECONDS
    finally:
        fairness.relay_ended()


def test_full_collections_wait_while_any_stream_relays() -> None:
    before = gc.get_threshold()
    fairness.relay_started()
    fairness.relay_started()
    assert gc.get_threshold() == (before[0], before[1], fairness.DEFERRED_THRESHOLD)
    fairness.relay_ended()
    assert gc.get_threshold()[2] == fairness.DEFERRED_THRESHOLD
    fairness.relay_ended()
    assert gc.get_threshold() == before


def test_the_bench_switch_puts_each_back() -> None:
    fairness.configure("short_slices, gc_deferral")
    before = gc.get_threshold()
    assert _slice_during_a_request() == fairness.LONG_SLICE_SECONDS
    fairness.relay_started()
    assert gc.get_threshold() == before
    fairness.relay_ended()


def test_an_unknown_name_stops_the_start() -> None:
    with pytest.raises(ValueError, match="WFG_FAIRNESS_OFF: unknown shorter_slices"):
        fairness.configure("shorter_slices")
