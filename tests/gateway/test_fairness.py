"""Short calls first (gateway_plugins/fairness.py): a relaying stream takes short slices
while other requests are open, full collections wait while streams relay, an ended
stream's kept chunks are freed a slice at a time, and the bench's switch puts each back.
How much it changes is measured in bench/RESULTS.md ("Long streams", Fairness); here only
which way each setting goes."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from gateway_plugins import fairness
from gateway_plugins.streaming import release_kept_chunks


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


class EndedStream:
    """What the release reads of a stream: the chunk objects it kept."""

    def __init__(self, count: int) -> None:
        self.chunks: list[object] = [{"delta": {"content": "w"}} for _ in range(count)]


def _release_beside_another_task(stream: EndedStream) -> tuple[int, bool]:
    """The chunks left when another ready task got its turn, and whether all were freed."""
    left: list[int] = []

    async def other_call() -> None:
        left.append(len(stream.chunks))

    async def run() -> None:
        other = asyncio.get_running_loop().create_task(other_call())
        await release_kept_chunks(stream)
        await other

    asyncio.run(run())
    return left[0], not stream.chunks


def test_an_ended_streams_kept_chunks_are_freed_giving_way_meanwhile() -> None:
    left, emptied = _release_beside_another_task(EndedStream(200_000))
    assert emptied
    assert left > 0  # the other call ran before the last slice was freed


def test_the_bench_switch_puts_each_back() -> None:
    fairness.configure("short_slices, gc_deferral, chunk_release")
    left, emptied = _release_beside_another_task(EndedStream(1_000))
    assert (left, emptied) == (1_000, False)  # freed with the stream, at once
    before = gc.get_threshold()
    assert _slice_during_a_request() == fairness.LONG_SLICE_SECONDS
    fairness.relay_started()
    assert gc.get_threshold() == before
    fairness.relay_ended()


def test_an_unknown_name_stops_the_start() -> None:
    with pytest.raises(ValueError, match="WFG_FAIRNESS_OFF: unknown shorter_slices"):
        fairness.configure("shorter_slices")
