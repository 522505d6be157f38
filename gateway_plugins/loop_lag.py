"""How long a call that is ready to run waits for the event loop: a watchdog, a metric.

Every call on a worker shares one event loop, so a callback that runs long (a stream
relaying a burst of buffered chunks back to back, a big rebuild done inline) delays every
other call by as long. A watchdog task sleeps `INTERVAL_SECONDS`, then steps aside once
(`asyncio.sleep(0)`: it is run again after every callback that was ready) and notes the
CPU the process spent until its turn came — one round of the loop, what any ready call
waits — or, when it woke late from its sleep, the CPU spent past its due time, if more
(a long hold that ended before the watchdog's turn). Counted in CPU, not wall time: on a
shared, oversubscribed machine the operating system also runs a process late, which is
not the loop being held (a callback holding the loop spends CPU all along; a process
waiting for a core spends none).

Work handed to a thread (LiteLLM's rebuild of a long stream's answer, token counts) is
pure Python: it holds the GIL, and the loop's thread gets it back only every switch
interval (5 ms by Python's default, per hand-over). `share_the_gil` sets it to
`SWITCH_INTERVAL_SECONDS`; it costs nothing while only the loop's thread runs.

`wfg_gateway_event_loop_wait_seconds` (a histogram, one sample per round watched) is that
figure; its buckets above a few milliseconds should stay empty (docs/operations.md).
`wfg_gateway_gc_pause_seconds` is the CPU of each of Python's older-generation garbage
collections (generations 1 and 2; they hold the loop like any callback, the longest being
full collections while long streams keep many objects alive).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any

from portal.observability.metrics import histogram

__all__ = [
    "GC_PAUSE",
    "INTERVAL_SECONDS",
    "SWITCH_INTERVAL_SECONDS",
    "WAIT",
    "share_the_gil",
    "start",
    "watch",
    "watch_collections",
]

INTERVAL_SECONDS = 0.01
SWITCH_INTERVAL_SECONDS = 0.001
WAIT = histogram(
    "wfg_gateway_event_loop_wait_seconds",
    "CPU the process spent on one round of the event loop's ready callbacks: how long a "
    "ready call waits for its turn (sampled by a watchdog).",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

GC_PAUSE = histogram(
    "wfg_gateway_gc_pause_seconds",
    "CPU of one garbage collection of Python's older generations (it holds the event loop).",
    ["generation"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)


def watch_collections() -> None:
    """Observe every collection of generation 1 or 2 (`gc.callbacks`; the young
    generation's, every few hundred allocations, cost ~no time and are not timed)."""
    began = 0.0
    pauses = {1: GC_PAUSE.labels(generation="1"), 2: GC_PAUSE.labels(generation="2")}
    cpu = time.process_time

    def observe(phase: str, info: dict[str, Any]) -> None:
        nonlocal began
        generation = info["generation"]
        if generation == 0:
            return
        if phase == "start":
            began = cpu()
        else:
            pauses[generation].observe(cpu() - began)

    gc.callbacks.append(observe)


async def watch(interval: float = INTERVAL_SECONDS) -> None:
    """Forever: every `interval`, observe how long the loop kept the watchdog waiting."""
    cpu = time.process_time
    while True:
        asleep = cpu()
        await asyncio.sleep(interval)
        # Woken late by a long callback: the CPU spent past the due time is at least all
        # of it less the interval (never more than was spent, whatever the OS did).
        awake = cpu()
        await asyncio.sleep(0)
        WAIT.observe(max(awake - asleep - interval, cpu() - awake, 0.0))


def start() -> asyncio.Task[None]:
    watch_collections()
    return asyncio.create_task(watch(), name="wfg-loop-watchdog")


def share_the_gil() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
