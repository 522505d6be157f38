"""Apply what Stripe says (`reads.Findings`) to our records, in the caller's transaction:
grant what was paid, claw back what was reversed, keep plan and status current.

Exactly once: a grant's ledger key is the thing paid (`cs_…` / `in_…`), so the webhook,
the success redirect, a replay and a sync grant it once between them. A claw-back is
keyed by how much of the charge has been reversed so far and posts only the difference
to what was already taken back, so partial refunds, a dispute after a refund, and
events in any order or repeated never take back more than the purchase granted.

A dispute is followed to its end, once per step, keyed by the dispute: while Stripe holds
the disputed money (an open chargeback) its share of the purchase is taken
(`<paid id>:dispute:<dp_…>:withdrawn`); a lost dispute keeps it taken; a won one gives
it back (`…:reinstated`). An inquiry moves no money and takes nothing. Each handler
re-reads the dispute's current state, so redeliveries in any order end the same way.

The balance may go negative after a claw-back; the gateway then answers 402 because a
reservation needs `balance - reserved >= amount`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import service as accounts
from portal.billing.models import BillingAccount
from portal.billing.reads import (
    LIVE_STATUSES,
    Dispute,
    Findings,
    Purchase,
    Reversal,
    SubscriptionState,
)
from portal.config.billing_settings import FREE_PLAN
from portal.credits import ledger
from portal.credits.models import CauseType, EntryKind
from portal.db.base import utcnow
from portal.db.upsert import insert_ignore
from portal.errors import NotFound

__all__ = [
    "Applied",
    "apply_findings",
    "billing_export",
    "get_account",
    "link_customer",
    "lock_account",
]

log = logging.getLogger(__name__)


@dataclass
class Applied:
    user_id: str
    granted_units: int = 0
    clawed_back_units: int = 0
    released_units: int = 0  # given back: disputes won
    closed_events: list[str] = field(default_factory=list)  # unmatched events a sync closed
    state_applied: bool = False


async def get_account(session: AsyncSession, user_id: str) -> BillingAccount | None:
    return await session.scalar(select(BillingAccount).where(BillingAccount.user_id == user_id))


async def lock_account(session: AsyncSession, user_id: str) -> BillingAccount:
    """The user's billing row, created if missing and locked until the transaction ends.

    The UPDATE takes the row lock on PostgreSQL and the write lock on SQLite, so two
    handlers for one user (a webhook and the success redirect, say) apply one at a time.
    """
    await insert_ignore(session, BillingAccount, user_id=user_id, updated_at=utcnow())
    await session.execute(
        update(BillingAccount).where(BillingAccount.user_id == user_id).values(updated_at=utcnow())
    )
    account = await session.scalar(
        select(BillingAccount)
        .where(BillingAccount.user_id == user_id)
        .execution_options(populate_existing=True)
    )
    assert account is not None
    return account


async def link_customer(session: AsyncSession, account: BillingAccount, customer_id: str) -> None:
    if account.stripe_customer_id is None:
        account.stripe_customer_id = customer_id
        await session.flush()
    elif account.stripe_customer_id != customer_id:
        log.warning(
            "user %s pays through a second Stripe customer %s; keeping %s",
            account.user_id,
            customer_id,
            account.stripe_customer_id,
        )


async def resolve_user(
    session: AsyncSession, customer_id: str | None, user_hint: str | None
) -> str | None:
    """Whose event: the user linked to the customer, else the user id we put in metadata."""
    if customer_id:
        user_id = await session.scalar(
            select(BillingAccount.user_id).where(BillingAccount.stripe_customer_id == customer_id)
        )
        if user_id is not None:
            return user_id
    if user_hint and await accounts.get_by_id(session, user_hint) is not None:
        return user_hint
    return None


async def fulfil(session: AsyncSession, user_id: str, purchase: Purchase) -> int:
    """Grant a paid purchase once; the units granted now (0 if unpaid or already granted)."""
    if not purchase.paid or purchase.credits_units <= 0:
        return 0
    posted = await ledger.post_entry(
        session,
        user_id=user_id,
        amount=purchase.credits_units,
        kind=purchase.kind,
        cause_type=CauseType.STRIPE_EVENT,
        cause_id=purchase.paid_id,
        note=purchase.note,
    )
    return purchase.credits_units if posted else 0


async def _granted(session: AsyncSession, user_id: str, purchase: Purchase) -> tuple[str, int]:
    """Who was granted the purchase and how much; granted now if its own event has not
    come yet (a refund or dispute that got here first: grant, then take back)."""
    grant = await ledger.entry_for_cause(session, CauseType.STRIPE_EVENT, purchase.paid_id)
    if grant is None:
        await fulfil(session, user_id, replace(purchase, paid=True))
        return user_id, purchase.credits_units
    return grant.user_id or user_id, grant.amount


async def _taken(session: AsyncSession, prefix: str) -> int:
    """Units taken back so far by the entries whose cause starts with `prefix`."""
    return -await ledger.sum_for_causes(session, CauseType.STRIPE_EVENT, prefix)


async def claw_back(session: AsyncSession, user_id: str, reversal: Reversal) -> int:
    """Take back the refunded share of a purchase; the units taken now."""
    paid_id = reversal.purchase.paid_id
    granted_to, granted = await _granted(session, user_id, reversal.purchase)
    prefix = f"{paid_id}:reversal:"
    taken = await _taken(session, prefix)
    left = granted - await _taken(session, f"{paid_id}:")  # after refunds and disputes
    due = min(reversal.units_to_claw_back(granted) - taken, left)
    if due <= 0:
        return 0
    posted = await ledger.post_entry(
        session,
        user_id=granted_to,
        amount=-due,
        kind=EntryKind.CLAWBACK,
        cause_type=CauseType.STRIPE_EVENT,
        cause_id=f"{prefix}{reversal.reversed_amount}",
        note=f"Stripe refund of {paid_id}",
    )
    return due if posted else 0


async def settle_dispute(session: AsyncSession, user_id: str, dispute: Dispute) -> int:
    """Bring the ledger to the dispute's current state; the units moved now (negative:
    taken). Each step is posted at most once: held when Stripe withdraws the money, given
    back once if Stripe reinstates it."""
    paid_id = dispute.purchase.paid_id
    granted_to, granted = await _granted(session, user_id, dispute.purchase)
    prefix = f"{paid_id}:dispute:{dispute.dispute_id}:"
    withdrawn = await ledger.entry_for_cause(session, CauseType.STRIPE_EVENT, f"{prefix}withdrawn")
    held = withdrawn.amount if withdrawn is not None else None
    if dispute.funds_withdrawn:
        if held is not None:
            return 0  # held already; a lost dispute keeps it
        left = granted - await _taken(session, f"{paid_id}:")
        due = min(dispute.units_withdrawn(granted), left)
        if due <= 0:
            return 0
        posted = await ledger.post_entry(
            session,
            user_id=granted_to,
            amount=-due,
            kind=EntryKind.CLAWBACK,
            cause_type=CauseType.STRIPE_EVENT,
            cause_id=f"{prefix}withdrawn",
            note=f"Stripe dispute {dispute.dispute_id} of {paid_id}: held",
        )
        return -due if posted else 0
    if held is None or int(held) >= 0:
        return 0  # nothing was held (an inquiry, or won before we saw it open)
    posted = await ledger.post_entry(
        session,
        user_id=granted_to,
        amount=-int(held),
        kind=EntryKind.ADJUSTMENT,
        cause_type=CauseType.STRIPE_EVENT,
        cause_id=f"{prefix}reinstated",
        note=f"Stripe dispute {dispute.dispute_id} of {paid_id}: won, given back",
    )
    return -int(held) if posted else 0


async def apply_state(
    session: AsyncSession, account: BillingAccount, state: SubscriptionState
) -> bool:
    """Store the subscription state unless a newer read is already stored; set users.plan."""
    if account.synced_at is not None and state.read_at <= account.synced_at:
        return False
    account.subscription_id = state.subscription_id
    account.status = state.status
    account.plan = state.plan
    account.current_period_end = state.current_period_end
    if state.card is not None:
        account.card_brand, account.card_last4 = state.card.brand, state.card.last4
    account.synced_at = state.read_at
    await accounts.set_plan(session, account.user_id, state.live_plan or FREE_PLAN)
    await session.flush()
    return True


async def apply_findings(
    session: AsyncSession, findings: Findings, *, expected_user_id: str | None = None
) -> Applied | None:
    """Apply everything `findings` says; None when it concerns no user of ours.

    With `expected_user_id` (the signed-in user on the success page), findings about
    anyone else raise NotFound instead."""
    if expected_user_id is not None:
        await lock_account(session, expected_user_id)
    user_id = await resolve_user(session, findings.customer_id, findings.user_hint)
    if expected_user_id is not None and user_id != expected_user_id:
        raise NotFound("no such checkout")
    if user_id is None:
        return None
    account = await lock_account(session, user_id)
    if findings.customer_id:
        await link_customer(session, account, findings.customer_id)
    applied = Applied(user_id)
    for purchase in findings.purchases:
        applied.granted_units += await fulfil(session, user_id, purchase)
    if findings.state is not None:
        applied.state_applied = await apply_state(session, account, findings.state)
    if findings.card is not None:
        account.card_brand, account.card_last4 = findings.card.brand, findings.card.last4
    for reversal in findings.reversals:
        applied.clawed_back_units += await claw_back(session, user_id, reversal)
    for dispute in findings.disputes:
        moved = await settle_dispute(session, user_id, dispute)
        if moved < 0:
            applied.clawed_back_units -= moved
        else:
            applied.released_units += moved
    await session.flush()
    return applied


def has_live_subscription(account: BillingAccount | None) -> bool:
    return account is not None and account.status in LIVE_STATUSES


def billing_export(account: BillingAccount | None) -> dict[str, object]:
    """The billing part of a user's data export: every field we keep from Stripe."""
    if account is None:
        return {}
    return {
        "stripe_customer_id": account.stripe_customer_id,
        "subscription_id": account.subscription_id,
        "plan": account.plan,
        "status": account.status,
        "current_period_end": account.current_period_end,
        "card_brand": account.card_brand,
        "card_last4": account.card_last4,
    }
