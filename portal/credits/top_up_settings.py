"""A person's auto top-up setting (`auto_top_ups`): on or off, the threshold under which a
settlement asks for a top-up, and how many credits to buy. The only writer of the table.

It lives with the credits because the settlement reads the threshold in its own
statement (`portal.credits.alerts`); paying is billing's (`portal.billing.auto_top_up`),
which checks the operator's bounds before `save` and calls `turn_off` when a payment
fails.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.credits.models import AutoTopUp
from portal.db.base import utcnow
from portal.db.upsert import insert_ignore

__all__ = ["get", "save", "turn_off"]


async def get(session: AsyncSession, user_id: str) -> AutoTopUp | None:
    return await session.scalar(select(AutoTopUp).where(AutoTopUp.user_id == user_id))


async def save(
    session: AsyncSession, user_id: str, *, enabled: bool, threshold_units: int, amount_units: int
) -> None:
    """The person's choice (bounds checked by the caller); clears why we turned it off."""
    if threshold_units < 0 or amount_units <= 0:
        raise ValueError("a threshold is not negative and an amount is positive")
    values = {
        "enabled": enabled,
        "threshold_units": threshold_units,
        "amount_units": amount_units,
        "off_reason": None,
        "updated_at": utcnow(),
    }
    if not await insert_ignore(session, AutoTopUp, user_id=user_id, **values):
        await session.execute(
            update(AutoTopUp).where(AutoTopUp.user_id == user_id).values(**values),
            execution_options={"synchronize_session": False},
        )


async def turn_off(session: AsyncSession, user_id: str, reason: str) -> bool:
    """Switch auto top-up off because a payment could not be made (`reason`: Stripe's
    error code or ours). False when it was already off."""
    result = await session.execute(
        update(AutoTopUp)
        .where(AutoTopUp.user_id == user_id, AutoTopUp.enabled)
        .values(enabled=False, off_reason=reason[:64], updated_at=utcnow())
        .returning(AutoTopUp.user_id),
        execution_options={"synchronize_session": False},
    )
    return result.first() is not None
