"""Graceful shutdown: no call that was answered leaves without its usage record.

LiteLLM runs success callbacks as background tasks after the response has gone, so a
plain uvicorn shutdown (finish open requests, run the lifespan shutdown, exit) can end
the process between a stream's last byte and its debit. `InFlight` counts, per process,
the calls that hold a reservation and the settlements being written; `drain`, run from
the lifespan shutdown (`gateway_plugins.server`) before LiteLLM tears down, waits for
both. What is still unsettled at the deadline is written to the disk spool, which the
next start (or any other instance sharing the spool) replays.

SIGTERM → uvicorn stops accepting and waits up to GATEWAY_GRACEFUL_SECONDS for open
requests → `drain` waits up to GATEWAY_DRAIN_SECONDS for callbacks and settlements →
exit. The pod's termination grace period must cover both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from gateway_plugins.metrics import INFLIGHT_CALLS, RESERVED_UNITS, USAGE_SPOOLED
from portal.usage.settlement import FinishedCall
from portal.usage.spool import Spool

__all__ = ["InFlight", "inflight"]

log = logging.getLogger(__name__)


class InFlight:
    def __init__(self) -> None:
        self._calls: dict[str, tuple[float, int]] = {}  # call id -> (monotonic, units held)
        self._settling: dict[asyncio.Task[None], FinishedCall] = {}
        self._emptied = asyncio.Event()

    def __len__(self) -> int:
        return len(self._calls) + len(self._settling)

    def reserved(self, call_id: str, units: int) -> None:
        """A call of this process now holds `units`; its settlement is owed."""
        if call_id in self._calls:
            return
        self._calls[call_id] = (time.monotonic(), units)
        RESERVED_UNITS.inc(units)
        INFLIGHT_CALLS.inc()

    def finished(self, call_id: str) -> None:
        """The call is settled (or released, or spooled): nothing is owed any more."""
        entry = self._calls.pop(call_id, None)
        if entry is not None:
            RESERVED_UNITS.dec(entry[1])
            INFLIGHT_CALLS.dec()
        if not self:
            self._emptied.set()

    def forget_older_than(self, seconds: float) -> None:
        """Calls whose callback never came (their reservation expired in the database)."""
        cutoff = time.monotonic() - seconds
        for call_id in [c for c, (started, _) in self._calls.items() if started < cutoff]:
            self.finished(call_id)

    async def settle(
        self, call: FinishedCall, settle: Callable[[FinishedCall], Awaitable[None]]
    ) -> None:
        """Run `settle(call)` in a task of its own and wait for it. Cancelling the caller
        (LiteLLM's callback timeout) does not cancel the settlement, and `drain` sees it."""
        task = asyncio.create_task(settle(call))
        self._settling[task] = call

        def done(finished: asyncio.Task[None]) -> None:
            self._settling.pop(finished, None)
            self.finished(call.call_id)

        task.add_done_callback(done)
        await asyncio.shield(task)

    async def drain(self, seconds: float, spool: Spool) -> None:
        """Wait for owed callbacks and running settlements; spool what is left."""
        if self:
            log.info("shutdown: waiting for %d calls to settle", len(self))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self:
                    self._emptied.clear()
                    await self._emptied.wait()
        for task, call in list(self._settling.items()):
            spool.append(call)  # settling is idempotent by call id: a replay is harmless
            USAGE_SPOOLED.inc()
            task.cancel()
            log.error("shutdown: settlement of call %s spooled for replay", call.call_id)
        if self._calls:
            log.warning(
                "shutdown: %d calls got no callback in time; their reservations expire",
                len(self._calls),
            )


inflight = InFlight()
