"""Step 7: settle. Where an answered call becomes a usage record and a debit — before
its answer's last byte is sent.

`settle` commits the usage row, the ledger debit (keyed by the call id) and the release
of the reservation together (`portal.usage.settlement.settle_new`: one autocommit
statement on PostgreSQL, one transaction of four on SQLite, sent by the driver itself);
what those leave (a replay, an upgrade, no credit account) `settle_call` decides in a
transaction. If the
database does not take it after a quick retry, the call's metadata is appended to the
local spool and fsynced (`portal.usage.spool`), which a background task replays; the
answer goes out either way, and a SIGKILL at any later moment loses nothing. Settling a
call twice (replay, a retry after a lost commit acknowledgement) writes nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from gateway_plugins import metrics
from gateway_plugins.breaker import DependencyDown, Guard
from portal.db import Database
from portal.tokens.service import touch_last_used
from portal.usage.settlement import FinishedCall, settle_call, settle_new
from portal.usage.spool import Spool

__all__ = ["commit_settlement", "settle"]

log = logging.getLogger(__name__)

ATTEMPTS = 2
RETRY_PAUSE_SECONDS = 0.05
TOUCH_EVERY_SECONDS = 60  # a token's last_used_at is written at most once a minute

_touched: dict[str, float] = {}  # token id -> time.monotonic() of the last write


def _touch_due(token_id: str | None) -> bool:
    if token_id is None:
        return False
    now = time.monotonic()
    if now - _touched.get(token_id, -TOUCH_EVERY_SECONDS) < TOUCH_EVERY_SECONDS:
        return False
    if len(_touched) > 100_000:
        _touched.clear()
    _touched[token_id] = now
    return True


async def settle(
    database: Database, spool: Spool, call: FinishedCall, guard: Guard | None = None
) -> None:
    """Commit the call's record and debit, or spool it durably. Never raises.

    With the database's `guard` (the gateway): each attempt runs within its deadline; a
    deadline passed is not retried and an open breaker is not tried at all, so a hung
    database costs a settlement at most one deadline before the spool takes it."""
    touch = _touch_due(call.token_id)
    for attempt in range(ATTEMPTS):
        try:
            async with guard.call() if guard is not None else contextlib.nullcontext():
                settled = await commit_settlement(database, call, touch_token=touch)
        except Exception as exc:
            metrics.USAGE_WRITE_FAILURES.inc()
            log.warning("usage settlement attempt %d failed: %s", attempt + 1, type(exc).__name__)
            if isinstance(exc, TimeoutError | DependencyDown):
                break
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            continue
        if settled:
            metrics.record_settled(call)
        return
    try:
        spool.append(call)
    except OSError as exc:  # disk gone too: the reservation expires, the row is lost
        log.critical("usage spool write failed (%s) for call %s", type(exc).__name__, call.call_id)
        return
    metrics.USAGE_SPOOLED.inc()
    log.error("usage settlement spooled to disk for replay (call %s)", call.call_id)


async def commit_settlement(database: Database, call: FinishedCall, *, touch_token: bool) -> bool:
    """Commit the call's record and debit and release its hold; False if it was settled
    before. Raises when the database does not take the record (`settle` retries, then
    spools)."""
    async with database.per_call() as driver:
        settled = await settle_new(driver, call)
    if not settled:  # a replay or an upgrade: the full path
        async with database.transaction() as session:
            return await settle_call(session, call, touch_token=touch_token)
    if touch_token and call.token_id:  # the token's last use, at most once a minute
        try:
            async with database.autocommit() as connection:
                await touch_last_used(connection, call.token_id, call.ended_at)
        except Exception as exc:  # not money: the call is settled, a later one retries
            log.warning("token last-use update failed: %s", type(exc).__name__)
    return True
