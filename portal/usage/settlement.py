"""Where a finished gateway call becomes one usage record and one ledger debit.

Both are written in the caller's transaction, keyed by LiteLLM's call id, and the
call's reservation is released in the same transaction. Settling the same call again
(duplicate callback, spool replay) writes nothing new.

One write path per backend (`settle_new`): on PostgreSQL one statement (the record, its
debit, the balance move, the release of the hold and the debit counted on the call's
token for its spending limit, all or nothing), on SQLite five in the caller's
transaction. The gateway sends them by the driver itself (`portal.db.driver`,
PostgreSQL in autocommit); the portal, the spool's replay and the gateway's second step
run the same statements through SQLAlchemy Core in a session (`settle_call`). Anything
the statements leave (a replay, a failed attempt to upgrade, no credit account) records
nothing there, and `settle_call` decides.

The only writer of `usage_records`: rows are written here at settlement and anonymised
here when retention says so (`anonymise_records`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from portal.credits import alerts, ledger, reservations
from portal.credits.models import CauseType, CreditAccount, EntryKind
from portal.db.base import utcnow
from portal.db.driver import CoreDriver, Driver, DriverStatement
from portal.tokens import spending
from portal.tokens.service import touch_last_used
from portal.usage.models import CallStatus, UsageRecord

__all__ = [
    "AnonymisedRecord",
    "FinishedCall",
    "anonymise_records",
    "settle_call",
    "settle_new",
]


@dataclass(frozen=True)
class FinishedCall:
    """Usage metadata of one call. No field can carry content, by construction."""

    call_id: str
    user_id: str
    token_id: str | None
    model: str
    status: CallStatus
    started_at: datetime
    ended_at: datetime
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    upstream_cost_nano_usd: int = 0
    credits: int = 0
    http_status: int | None = None
    error_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FinishedCall:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["started_at"] = datetime.fromisoformat(values["started_at"])
        values["ended_at"] = datetime.fromisoformat(values["ended_at"])
        values["status"] = CallStatus(values["status"])
        return cls(**values)


_RECORD_FIELDS = (
    "user_id", "token_id", "model", "status", "prompt_tokens", "completion_tokens",
    "cached_tokens", "reasoning_tokens", "upstream_cost_nano_usd", "credits",
    "http_status", "error_type", "started_at", "ended_at",
)  # fmt: skip


_columns = UsageRecord.__table__.c
_NEW_COLUMNS = ("call_id", "created_at", *_RECORD_FIELDS)
# The record, only when the user's credit account exists (else the debit could not move
# a balance). Parameters named `record_<column>`: a parameter named after a column of the
# UPDATE in the same statement would become one of its SET values.
_NEW_RECORD_ROW = select(
    *(bindparam(f"record_{name}", type_=_columns[name].type) for name in _NEW_COLUMNS)
).where(exists().where(CreditAccount.__table__.c.user_id == bindparam("holder")))
# PostgreSQL: a CTE the ledger's debit statement builds on, which also releases the hold.
_NEW_RECORD = (
    postgresql.insert(UsageRecord.__table__)
    .from_select(list(_NEW_COLUMNS), _NEW_RECORD_ROW)
    .on_conflict_do_nothing()
    .returning(_columns.id)
    .cte("new_record")
)
_SETTLE_AT_ONCE = DriverStatement(
    ledger.usage_debit(_NEW_RECORD, reservations.hold_release()), "postgresql"
)
# SQLite: the first statement of the settlement's transaction.
_NEW_RECORD_ON_SQLITE = DriverStatement(
    sqlite.insert(UsageRecord.__table__)
    .from_select(list(_NEW_COLUMNS), _NEW_RECORD_ROW)
    .on_conflict_do_nothing()
    .returning(_columns.id),
    "sqlite",
)


async def settle_new(driver: Driver | CoreDriver, call: FinishedCall) -> bool:
    """A call not recorded before: its record, its debit, the balance move, the
    release of its hold and both counted on its token (`portal.tokens.spending`). On
    PostgreSQL one statement (in autocommit: `Database.per_call`); on SQLite up to five
    in the caller's transaction. False when it recorded nothing (on PostgreSQL the hold
    is released all the same): then `settle_call` decides, in a transaction."""
    if call.credits < 0:
        raise ValueError("a call cannot credit the user")
    now = utcnow()
    parameters = {f"record_{name}": getattr(call, name) for name in _RECORD_FIELDS}
    parameters |= {"record_call_id": call.call_id, "record_created_at": now, "now": now}
    parameters |= {"holder": call.user_id, "units": -call.credits, "cause_id": call.call_id}
    parameters |= {"held_for": call.call_id, "token": call.token_id}
    parameters[alerts.LOW_BALANCE_BELOW] = alerts.low_balance_threshold()
    if driver.dialect == "postgresql":
        parameters |= spending.period_parameters()
        return bool(await driver.fetch(_SETTLE_AT_ONCE, parameters))
    recorded = await driver.fetch(_NEW_RECORD_ON_SQLITE, parameters)
    if not recorded:
        return False
    released, on_token = await reservations.release_on_driver(driver, call.call_id)
    posted = await ledger.usage_debit_on_driver(
        driver,
        user_id=call.user_id,
        amount=-call.credits,
        call_id=call.call_id,
        record_id=recorded[0][0],
        released=released,
    )
    if call.token_id is not None:
        await spending.settle_on_driver(
            driver, token_id=call.token_id, debit=-posted, released=on_token
        )
    return True


async def settle_call(
    session: AsyncSession, call: FinishedCall, *, touch_token: bool = True
) -> bool:
    """Record the call, debit it, release its hold. False if it was already settled.

    The common case is a new call: `settle_new`'s statements, in the session's
    transaction. When they record nothing the call was settled before (a replay), or only
    its failed attempt was (then it is upgraded), or its user has no credit account yet
    (then one is made)."""
    if not await settle_new(CoreDriver(session), call):
        record = await session.scalar(
            select(UsageRecord).where(UsageRecord.call_id == call.call_id)
        )
        if record is None:  # no credit account: the statements write nothing without one
            await ledger.ensure_account(session, call.user_id)
            if not await settle_new(CoreDriver(session), call):
                raise RuntimeError(f"call {call.call_id} could not be settled")
        elif record.status == CallStatus.FAILED and call.status == CallStatus.SUCCESS:
            # A failed attempt row is upgraded when the same call later succeeds (fallbacks).
            for name in _RECORD_FIELDS:
                setattr(record, name, getattr(call, name))
            await session.flush()
            await reservations.release(session, call.call_id)
            if await _debit(session, call, record.id) and call.token_id is not None:
                await spending.settle_on_driver(
                    CoreDriver(session), token_id=call.token_id, debit=call.credits, released=0
                )
        else:
            await reservations.release(session, call.call_id)
            return False
    if call.token_id and touch_token:
        await touch_last_used(session, call.token_id, call.ended_at)
    return True


async def _debit(session: AsyncSession, call: FinishedCall, record_id: int) -> bool:
    """Post the call's debit; whether it was posted now."""
    if call.credits:
        return await ledger.post_entry(
            session,
            user_id=call.user_id,
            amount=-call.credits,
            kind=EntryKind.DEBIT,
            cause_type=CauseType.USAGE,
            cause_id=call.call_id,
            usage_record_id=record_id,
        )
    return False


@dataclass(frozen=True)
class AnonymisedRecord:
    """What an anonymised usage record keeps instead of its key and times."""

    id: int
    call_id: str  # replaces LiteLLM's call id (the ledger debit carries the same id)
    started_at: datetime  # the day only
    ended_at: datetime


async def anonymise_records(session: AsyncSession, records: list[AnonymisedRecord]) -> None:
    """Retention: the records no longer say who made them (user, token), which call they
    were, or the time of day; model, token counts and cost stay."""
    if records:
        await session.execute(
            update(UsageRecord),
            [
                {
                    "id": r.id,
                    "user_id": None,
                    "token_id": None,
                    "call_id": r.call_id,
                    "started_at": r.started_at,
                    "ended_at": r.ended_at,
                    "created_at": r.started_at,
                }
                for r in records
            ],
        )
