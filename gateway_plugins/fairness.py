"""Short calls first: a long stream's relay yields more often while other calls are served.

Every call on a worker shares one event loop. A stream relaying a burst of buffered chunks
runs `streaming.SLICE_SECONDS` (1 ms) at a time and then gives way (`streaming.give_way`),
so a short call's step that became ready meanwhile waits up to one slice of each such
stream — at each of its ~15-20 awaits (Redis, the database, the upstream, the client).
Two streams added 1.6-2.8× to the short calls' p99 on a quiet machine.

So the worker counts the requests it is serving (`CountRequests`, the outermost ASGI
layer) and the streams that are relaying a burst (`relay_started`): while any other request
is open, a relaying stream takes slices of `SHARED_SLICE_SECONDS` (about one chunk)
instead. Alone, or beside other streams only, it keeps the long slice (a yield costs a
loop round: per chunk it would be a few % of a stream's CPU). The streams never starve:
`give_way` steps aside for at most `GIVE_WAY_ROUNDS` rounds per slice.

Full garbage collections are the longest holds left (20-100 ms of CPU each): LiteLLM
keeps every chunk object of a stream until it ends (~100k objects for 5,000 chunks), so
the oldest generation grows by a quarter again and again while streams run, and each time
Python walks all of it — objects that are freed by reference counting when the stream
ends, never garbage the collector could find. While any stream relays a burst, full
collections are deferred (`DEFERRED_THRESHOLD`: ten times fewer); the younger generations
are collected as before, and the default comes back when the last stream has ended and
its kept chunks are freed.

A stream's end was the longest hold after those (15-20 ms of CPU, once per long stream):
the same ~100k chunk objects LiteLLM kept, freed by reference counting all at once when
the request let go of the stream. Once a stream has ended, been closed and been settled,
`MeteredStream` empties that list (`litellm_bridge.kept_chunks`) in slices, giving way
between them like the relay, so what is freed at the end is the stream's last few objects.

`WFG_FAIRNESS_OFF` (bench A/B only, `Settings.fairness_off`): `short_slices` keeps the
long slice always, `gc_deferral` the collector's thresholds, `chunk_release` frees a
stream's kept chunks at once, as before.
"""

from __future__ import annotations

import gc
from typing import Any

from gateway_plugins.ab_switches import named

__all__ = [
    "LONG_SLICE_SECONDS",
    "NAMES",
    "SHARED_SLICE_SECONDS",
    "CountRequests",
    "configure",
    "relay_ended",
    "relay_started",
    "release_chunks_in_slices",
    "slice_seconds",
]

NAMES = frozenset({"short_slices", "gc_deferral", "chunk_release"})
LONG_SLICE_SECONDS = 0.001  # a stream alone on the worker (or beside other streams only)
SHARED_SLICE_SECONDS = 0.0002  # while other requests are open: about one chunk

_open = 0  # requests this worker is serving (streams included)
_relaying = 0  # streams relaying a burst (past their first slice)
_short_slices = True
_gc_deferral = True
_chunk_release = True
DEFERRED_THRESHOLD = 100  # gc threshold2 while streams relay (Python's default: 10)
_threshold: tuple[int, int, int] | None = None  # the collector's, while deferred


def configure(fairness_off: str) -> None:
    """Read the A/B switch once at start; an unknown name stops the start."""
    global _short_slices, _gc_deferral, _chunk_release
    off = named("WFG_FAIRNESS_OFF", fairness_off, NAMES)
    _short_slices = "short_slices" not in off
    _gc_deferral = "gc_deferral" not in off
    _chunk_release = "chunk_release" not in off


def release_chunks_in_slices() -> bool:
    """Whether an ended stream's kept chunks are freed a slice at a time."""
    return _chunk_release


def slice_seconds() -> float:
    """How long a relaying stream may now run before it gives the loop back."""
    if _short_slices and _open > _relaying:
        return SHARED_SLICE_SECONDS
    return LONG_SLICE_SECONDS


def relay_started() -> None:
    """A stream begins relaying a burst (it counts as such until `relay_ended`)."""
    global _relaying, _threshold
    _relaying += 1
    if _gc_deferral and _threshold is None:
        _threshold = gc.get_threshold()
        gc.set_threshold(_threshold[0], _threshold[1], max(_threshold[2], DEFERRED_THRESHOLD))


def relay_ended() -> None:
    global _relaying, _threshold
    _relaying -= 1
    if _relaying == 0 and _threshold is not None:
        gc.set_threshold(*_threshold)
        _threshold = None


class CountRequests:
    """The outermost ASGI layer: counts the HTTP requests being served."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        global _open
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        _open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            _open -= 1
