"""The record of Stripe events we act on (`stripe_events`), one row per event id.

    handled    applied, or about no customer of ours: a redelivery is a duplicate
    unmatched  would move credits or give a plan (a paid period or pack, a refund or
               dispute of one, a live subscription to one of our plans) but no user
               matches it, or its object is gone at Stripe. Listed by
               `gateway-admin billing unmatched`; a redelivery or `billing replay` tries
               again, and `billing sync` of the customer's user applies what Stripe says
               and closes them.

A replay never turns a handled event back into an unmatched one.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.models import EventOutcome, StripeEvent
from portal.db.base import utcnow
from portal.db.upsert import insert_ignore

__all__ = ["claim", "close_for_customer", "is_handled", "list_unmatched", "record_outcome"]


async def is_handled(session: AsyncSession, event_id: str) -> bool:
    row = await session.get(StripeEvent, event_id)
    return row is not None and row.outcome == EventOutcome.HANDLED


async def claim(
    session: AsyncSession, event_id: str, event_type: str, *, replay: bool
) -> tuple[StripeEvent, bool] | None:
    """The event's row (created if new) locked until the transaction ends, and whether it
    is new; None when it was handled already and this is not a replay. Two deliveries of
    one event wait for each other here, so only one of them applies it."""
    now = utcnow()
    new = await insert_ignore(
        session,
        StripeEvent,
        id=event_id,
        type=event_type,
        received_at=now,
        outcome=EventOutcome.HANDLED,
        last_seen_at=now,
    )
    row = await session.scalar(
        select(StripeEvent)
        .where(StripeEvent.id == event_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    if not new and row.outcome == EventOutcome.HANDLED and not replay:
        return None
    return row, new


def record_outcome(
    row: StripeEvent,
    *,
    new: bool,
    unmatched_reason: str | None,
    customer_id: str | None,
    object_id: str | None,
) -> None:
    """Mark the claimed row handled, or unmatched (why, and which customer and object)."""
    row.last_seen_at = utcnow()
    if unmatched_reason is None:
        row.outcome, row.reason = EventOutcome.HANDLED, None
    elif new or row.outcome == EventOutcome.UNMATCHED:
        row.outcome, row.reason = EventOutcome.UNMATCHED, unmatched_reason
        row.stripe_customer_id = customer_id or row.stripe_customer_id
        row.object_id = object_id or row.object_id


async def list_unmatched(
    session: AsyncSession, *, customer_id: str | None = None
) -> list[StripeEvent]:
    query = select(StripeEvent).where(StripeEvent.outcome == EventOutcome.UNMATCHED)
    if customer_id is not None:
        query = query.where(StripeEvent.stripe_customer_id == customer_id)
    return list(await session.scalars(query.order_by(StripeEvent.received_at, StripeEvent.id)))


async def close_for_customer(session: AsyncSession, customer_id: str) -> list[str]:
    """After `billing sync` applied everything Stripe says about the customer: their
    unmatched events are handled. The ids closed."""
    ids = [e.id for e in await list_unmatched(session, customer_id=customer_id)]
    if ids:
        await session.execute(
            update(StripeEvent)
            .where(StripeEvent.id.in_(ids))
            .values(outcome=EventOutcome.HANDLED, reason="closed by billing sync")
        )
    return ids
