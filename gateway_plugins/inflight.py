"""Calls in flight in this process, so a shutdown can wait for them.

Every answered call is settled before its last byte is sent, so after a SIGTERM
uvicorn's own wait for open requests (`GATEWAY_GRACEFUL_SECONDS`) covers settlement too;
`drain` (`GATEWAY_DRAIN_SECONDS`) then waits for any call still settling: past the
graceful window uvicorn cancels the calls still running, and each settles what it cut
(`streaming.MeteredStream`, `pipeline._no_answer`) before it leaves this list. A call
that never finishes leaves its hold to expire with the request deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway_plugins import metrics

__all__ = ["InFlight"]

log = logging.getLogger(__name__)


class InFlight:
    def __init__(self) -> None:
        self._calls: dict[str, int] = {}  # call id -> units held
        self._emptied = asyncio.Event()

    def __len__(self) -> int:
        return len(self._calls)

    def started(self, call_id: str, units: int) -> None:
        self._calls[call_id] = units
        metrics.RESERVED_UNITS.inc(units)
        metrics.INFLIGHT_CALLS.inc()

    def finished(self, call_id: str) -> None:
        units = self._calls.pop(call_id, None)
        if units is not None:
            metrics.RESERVED_UNITS.dec(units)
            metrics.INFLIGHT_CALLS.dec()
        if not self._calls:
            self._emptied.set()

    async def drain(self, seconds: float) -> None:
        if self._calls:
            log.info("shutdown: waiting for %d calls to finish", len(self._calls))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self._calls:
                    self._emptied.clear()
                    await self._emptied.wait()
        if self._calls:
            log.warning("shutdown: %d calls unfinished; their holds expire", len(self._calls))
