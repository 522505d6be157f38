"""Jobs every gateway runs beside its requests:

- replay the usage spool (settlements the database did not take), every 30 s;
- release holds past their expiry (a process that died mid-call), every 30 s, so
  they expire on their own rather than on the user's next refusal.

With a request deadline shorter than 30 s the jobs run once per deadline instead, so a
dead process's holds (which expire with the deadline) are gone within two deadlines.

Both are idempotent and safe to run on every instance at once.
"""

from __future__ import annotations

import asyncio
import logging

from gateway_plugins.runtime import GatewayRuntime
from portal.credits import reservations
from portal.usage.settlement import FinishedCall, settle_call

__all__ = ["INTERVAL_SECONDS", "start"]

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 30


def start(runtime: GatewayRuntime) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(_forever(runtime), name="wfg-background")]


async def _forever(runtime: GatewayRuntime) -> None:
    interval = min(INTERVAL_SECONDS, runtime.deadline_seconds)
    while True:
        await run_once(runtime)
        await asyncio.sleep(interval)


async def run_once(runtime: GatewayRuntime) -> None:
    async def settle(call: FinishedCall) -> None:
        async with runtime.database.transaction() as session:
            await settle_call(session, call)

    try:
        # A hung database costs this round its interval, not the process a stuck task.
        async with asyncio.timeout(min(INTERVAL_SECONDS, runtime.deadline_seconds)):
            replayed = await runtime.spool.replay(settle)
            if replayed:
                log.info("replayed %d spooled usage settlements", replayed)
            async with runtime.database.transaction() as session:
                released = await reservations.release_expired(session)
        if released:
            log.info("released %d units held by calls that never finished", released)
    except Exception as exc:  # the database is down: try again next round
        log.warning("background round skipped: %s", type(exc).__name__)
