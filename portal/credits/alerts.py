"""Balance alerts: the outbox between a settlement that crossed a threshold and the portal,
which sends the low-balance email and starts auto top-ups.

Why an outbox row, written by the settlement itself: the gateway must not call Stripe or
send mail (no network on the money path, and no Stripe key in the gateway), and a
crossing must survive the gateway dying the moment after it. So the crossing is detected
where the balance moves, from the balance before and after the debit, and recorded there:

- PostgreSQL: two more CTEs in the settlement's one statement (`crossing_alert`, composed
  by `portal.credits.ledger.usage_debit`): no extra round trip. The UPDATE of the account
  returns the new balance; the balance before is that minus the debit. Because the UPDATE
  locks the account's row, two settlements racing past a threshold see it one after the
  other, and only one of them crosses it. A crossing also `pg_notify`s the portal, which
  listens (`portal.jobs.balance_alerts`), at the statement's commit.
- SQLite: the settlement's UPDATE of the account returns the new balance and the
  account's auto top-up threshold (`MOVE_RETURNING`); only a crossing costs one more
  statement (`add_alert_on_driver`), in the same transaction.

Thresholds: the operator's low-balance one (`workforce_gateway.credits.low_balance_credits`,
set once per process with `set_low_balance_threshold`, a bind parameter of the statement)
and the person's auto top-up threshold (`auto_top_ups.threshold_units` while enabled,
joined by the statement). "Crossed" means: at or above before the debit, below after it.

The portal takes rows one at a time (`take_next`, which deletes the row in the caller's
transaction, so a handler that fails leaves it for the next pass) and may add its own
(`add_top_up_check`: auto top-up switched on, or a top-up credited while still below).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from portal.config.plugin_settings import CreditSettings
from portal.credits.models import AutoTopUp, BalanceAlert, CreditAccount
from portal.credits.units import credits_to_units
from portal.db.base import UTCDateTime, utcnow
from portal.db.driver import CoreDriver, Driver, DriverStatement

__all__ = [
    "CHANNEL",
    "LOW_BALANCE_BELOW",
    "MOVE_RETURNING",
    "TakenAlert",
    "add_alert_on_driver",
    "add_top_up_check",
    "crossed",
    "crossing_alert",
    "is_low_balance",
    "low_balance_threshold",
    "set_low_balance_threshold",
    "take_next",
]

CHANNEL = "wfg_balance_alerts"
"""The PostgreSQL notification channel the portal listens on."""

LOW_BALANCE_BELOW = "low_balance_below"
"""The bind parameter that carries the low-balance threshold (units) into the settlement."""

_alerts = BalanceAlert.__table__.c
_top_ups = AutoTopUp.__table__.c
_accounts = CreditAccount.__table__.c
_ALERT_COLUMNS = ["user_id", "low_balance", "top_up", "balance", "created_at"]
_LOW = bindparam(LOW_BALANCE_BELOW, type_=BigInteger())
_NOW = bindparam("now", type_=UTCDateTime())


@dataclass
class _Threshold:
    units: int


_low_balance = _Threshold(credits_to_units(CreditSettings().low_balance_credits))


def set_low_balance_threshold(units: int) -> None:
    """The operator's low-balance threshold for this process's settlements (0: none). The
    gateway and the portal set it from config.yaml at start; the default is
    config.yaml's default."""
    if units < 0:
        raise ValueError("the low-balance threshold cannot be negative")
    _low_balance.units = units


def low_balance_threshold() -> int:
    return _low_balance.units


def is_low_balance(balance: int) -> bool:
    """Below the low-balance threshold (never when there is none)."""
    return _low_balance.units > 0 and balance < _low_balance.units


def _crossed(
    after: ColumnElement[int], before: ColumnElement[int], below: ColumnElement[int]
) -> ColumnElement[bool]:
    return and_(after < below, before >= below)


def crossing_alert(moved: CTE, posted: ColumnElement[int]) -> CTE:
    """PostgreSQL: the CTEs that add an alert when the settlement's UPDATE of the account
    (`moved`, returning `user_id` and the new `balance`) took it across a threshold by
    `posted` (the debit, negative), and notify the portal. Its rows: one per notification
    sent (0 or 1). Bind parameters: `low_balance_below`, `now`."""
    before = moved.c.balance - posted
    low = and_(_LOW > 0, _crossed(moved.c.balance, before, _LOW))
    top_up = _crossed(moved.c.balance, before, _top_ups.threshold_units)
    joined = moved.outerjoin(
        AutoTopUp.__table__, and_(_top_ups.user_id == moved.c.user_id, _top_ups.enabled)
    )
    alert = (
        postgresql.insert(BalanceAlert.__table__)
        .from_select(
            _ALERT_COLUMNS,
            select(moved.c.user_id, low, func.coalesce(top_up, false()), moved.c.balance, _NOW)
            .select_from(joined)
            .where(posted < 0, or_(low, top_up)),
        )
        .returning(_alerts.id)
        .cte("alerted")
    )
    return select(func.pg_notify(CHANNEL, "")).select_from(alert).cte("alert_notified")


MOVE_RETURNING = (
    _accounts.balance,
    select(_top_ups.threshold_units)
    .where(_top_ups.user_id == _accounts.user_id, _top_ups.enabled)
    .scalar_subquery(),
)
"""SQLite: what the settlement's UPDATE of the account returns, for `crossed`: the new
balance and the auto top-up threshold (None when off)."""


def crossed(
    *, after: int, posted: int, top_up_below: int | None, low_below: int | None = None
) -> tuple[bool, bool]:
    """(low balance crossed, auto top-up threshold crossed) by a debit of `posted` (< 0)
    that left the balance at `after`."""
    if posted >= 0:
        return False, False
    before = after - posted
    low = low_balance_threshold() if low_below is None else low_below
    return (
        low > 0 and after < low <= before,
        top_up_below is not None and after < top_up_below <= before,
    )


_ADD_ALERT_ON_SQLITE = DriverStatement(
    insert(BalanceAlert.__table__).values(
        user_id=bindparam("holder"),
        low_balance=bindparam("low_balance"),
        top_up=bindparam("top_up"),
        balance=bindparam("balance", type_=BigInteger()),
        created_at=_NOW,
    ),
    "sqlite",
)


async def add_alert_on_driver(
    driver: Driver | CoreDriver, *, user_id: str, balance: int, low_balance: bool, top_up: bool
) -> None:
    """SQLite, in the settlement's transaction: the alert `crossed` found."""
    await driver.fetch(
        _ADD_ALERT_ON_SQLITE,
        {
            "holder": user_id,
            "low_balance": low_balance,
            "top_up": top_up,
            "balance": balance,
            "now": utcnow(),
        },
    )


async def add_top_up_check(session: AsyncSession, user_id: str, balance: int) -> None:
    """The portal's own alert: look at this account's auto top-up again (it was switched
    on, or a top-up was credited and the balance may still be below the threshold).
    Wakes the listener at commit on PostgreSQL."""
    session.add(BalanceAlert(user_id=user_id, low_balance=False, top_up=True, balance=balance))
    await session.flush()
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_notify(CHANNEL, literal(""))))


@dataclass(frozen=True)
class TakenAlert:
    id: int
    user_id: str
    low_balance: bool
    top_up: bool
    balance: int
    created_at: datetime


async def take_next(session: AsyncSession) -> TakenAlert | None:
    """The oldest alert, deleted in the caller's transaction (a rollback puts it back).
    Several portal processes take different rows (SKIP LOCKED on PostgreSQL; SQLite has
    one writer at a time)."""
    while True:
        oldest = select(_alerts.id).order_by(_alerts.id).limit(1).with_for_update(skip_locked=True)
        alert_id = await session.scalar(oldest)
        if alert_id is None:
            return None
        row = (
            await session.execute(
                delete(BalanceAlert.__table__).where(_alerts.id == alert_id).returning(*_alerts)
            )
        ).first()
        if row is not None:  # else another process took it meanwhile
            return TakenAlert(
                row.id, row.user_id, row.low_balance, row.top_up, int(row.balance), row.created_at
            )
