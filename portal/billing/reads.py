"""Read Stripe, and say what it means for us: purchases to grant, reversals to claw
back, the subscription state to show. No database here.

Handlers re-read the objects an event names instead of trusting the event's copy: the
API answers with the current state, so events applied in any order, or twice, end in the
same place. The parsers below take Stripe's wire shapes (plain dicts).

What an invoice is worth (`invoice_purchase`): a period whose invoice was paid with money
(total after discounts above zero, by card or from the customer's Stripe balance) grants
the plan's `credits_per_period`; a $0 invoice grants `free_period_credits` when a coupon
made it free, else it is a trial and grants `trial_credits` (both default to 0).

Disputes (`Dispute`): an inquiry moves no money and takes nothing back; a chargeback
withdraws the disputed amount at once, so its share of the purchase is held while the
dispute is open, kept if it is lost and given back if it is won.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from portal.billing.models import SubscriptionStatus
from portal.billing.runtime import Billing
from portal.config.billing_settings import BillingSettings
from portal.credits.models import EntryKind
from portal.db.base import utcnow

__all__ = [
    "ENDED_STATUSES",
    "LIVE_STATUSES",
    "NO_FUNDS_WITHDRAWN",
    "Card",
    "Dispute",
    "Findings",
    "Purchase",
    "Reversal",
    "SubscriptionState",
    "TopUpPaid",
    "card_of",
    "customer_user_hint",
    "invoice_basis",
    "invoice_purchase",
    "pack_purchase",
    "read_charge",
    "read_checkout",
    "read_customer",
    "read_customer_state",
    "read_dispute",
    "read_invoice",
    "read_payment_intent",
    "subscription_state",
    "top_up_purchase",
]

Obj = dict[str, Any]

# A subscription in these states keeps its plan (past_due: Stripe is still retrying).
LIVE_STATUSES = frozenset(
    {SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE}
)
ENDED_STATUSES = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED})
# Dispute states in which Stripe holds none of the money: inquiries (warning_*), disputes
# won (funds reinstated) or prevented. Every other state, including any Stripe adds
# later, counts as funds withdrawn: deny by default.
NO_FUNDS_WITHDRAWN = frozenset(
    {"warning_needs_response", "warning_under_review", "warning_closed", "won", "prevented"}
)


@dataclass(frozen=True)
class Card:
    brand: str
    last4: str


@dataclass(frozen=True)
class Purchase:
    """Something paid for that buys credits, keyed by its Stripe id (cs_… or in_…)."""

    paid_id: str
    kind: str  # EntryKind.PURCHASE (pack) or EntryKind.SUBSCRIPTION (a period)
    credits_units: int
    paid: bool
    note: str


def _share(granted: int, charge_amount: int, amount: int) -> int:
    """`amount`'s share of `granted` units (half up), never more than was granted."""
    if granted <= 0 or amount <= 0:
        return 0
    if charge_amount <= 0 or amount >= charge_amount:
        return granted
    return (2 * granted * amount + charge_amount) // (2 * charge_amount)


@dataclass(frozen=True)
class Reversal:
    """Money refunded from a purchase's charge so far."""

    purchase: Purchase
    charge_amount: int  # smallest currency unit
    reversed_amount: int

    def units_to_claw_back(self, granted: int) -> int:
        """Of `granted` units, how many to have taken back in total: the reversed share of
        the charge (half up), never more than was granted."""
        return _share(granted, self.charge_amount, self.reversed_amount)


@dataclass(frozen=True)
class Dispute:
    """A dispute of the charge that paid for `purchase`, in its current state."""

    dispute_id: str
    purchase: Purchase
    charge_amount: int
    refunded_amount: int  # refunded before the dispute: not disputed again
    amount: int  # disputed
    status: str

    @property
    def funds_withdrawn(self) -> bool:
        """Stripe holds the disputed money now (an open chargeback, or a lost one)."""
        return self.status not in NO_FUNDS_WITHDRAWN

    def units_withdrawn(self, granted: int) -> int:
        """The disputed share of `granted` units, on top of the refunded share (both
        rounded together, so refund + dispute never exceed what was granted)."""
        before = _share(granted, self.charge_amount, self.refunded_amount)
        return _share(granted, self.charge_amount, self.refunded_amount + self.amount) - before


@dataclass(frozen=True)
class SubscriptionState:
    subscription_id: str | None
    status: str | None
    plan: str | None
    current_period_end: datetime | None
    card: Card | None
    read_at: datetime

    @property
    def live_plan(self) -> str | None:
        """The plan the user has now, or None (free)."""
        return self.plan if self.status in LIVE_STATUSES else None


@dataclass(frozen=True)
class TopUpPaid:
    """An auto top-up's PaymentIntent, read from Stripe: whose attempt it pays."""

    payment_intent_id: str
    user_id: str | None
    sequence: int
    succeeded: bool
    failure: str | None = None  # why it was refused (the bank, or canceled); None otherwise


@dataclass
class Findings:
    """What some Stripe reads say about one customer."""

    customer_id: str | None = None
    user_hint: str | None = None  # metadata.user_id we put on the objects we created
    purchases: list[Purchase] = field(default_factory=list)
    reversals: list[Reversal] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)
    state: SubscriptionState | None = None
    card: Card | None = None  # the card of a pack payment
    top_up: TopUpPaid | None = None  # an auto top-up's payment

    @property
    def concerns_us(self) -> bool:
        """Whether this would move credits or give a plan (a paid plan period or pack, a
        refund or dispute of one, a live subscription to one of our plans): if no user
        matches it, it is *unmatched*. Anything else (an ended subscription of a deleted
        account, a card change) has nothing to apply."""
        return bool(
            any(p.paid and p.credits_units > 0 for p in self.purchases)
            or self.reversals
            or self.disputes
            or (self.state is not None and self.state.live_plan is not None)
        )


# ---------------------------------------------------------------- parsers
def _id(value: Any) -> str | None:
    """An id whether the field holds the id or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def _metadata_user(obj: Obj | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("user_id") or None


def card_of(payment_method: Any) -> Card | None:
    if not isinstance(payment_method, dict) or payment_method.get("type") != "card":
        return None
    card = payment_method.get("card") or {}
    if not card.get("brand") or not card.get("last4"):
        return None
    return Card(brand=str(card["brand"])[:32], last4=str(card["last4"])[-4:])


def pack_purchase(catalog: BillingSettings, session: Obj) -> Purchase | None:
    """A `mode=payment` Checkout Session (line_items expanded) as a credit pack purchase."""
    if session.get("mode") != "payment":
        return None
    units, names = 0, []
    for item in (session.get("line_items") or {}).get("data") or []:
        pack_id = catalog.pack_for_price(_id(item.get("price")))
        if pack_id is None:
            continue
        quantity = int(item.get("quantity") or 1)
        units += catalog.packs[pack_id].credits_units * quantity
        names.append(f"{pack_id} x{quantity}")
    if units == 0:
        return None
    paid = session.get("status") == "complete" and session.get("payment_status") in (
        "paid",
        "no_payment_required",
    )
    return Purchase(
        paid_id=session["id"],
        kind=EntryKind.PURCHASE,
        credits_units=units,
        paid=paid,
        note=f"Stripe checkout: pack {', '.join(names)}",
    )


TOP_UP_METADATA = "wfg_auto_top_up"
"""The PaymentIntent metadata key that marks an auto top-up (value: its sequence); set
with our secret key when the payment is made (`portal.billing.auto_top_up_flows`), with
`credits_units` (what it buys) and `user_id`."""


def top_up_purchase(intent: Obj) -> tuple[Purchase, TopUpPaid] | None:
    """An auto top-up's PaymentIntent as a purchase keyed by its id, paid once it
    succeeded for its full amount; None for any other PaymentIntent."""
    meta = intent.get("metadata") or {}
    sequence, units = meta.get(TOP_UP_METADATA), meta.get("credits_units")
    if not (isinstance(sequence, str) and sequence.isdigit()):
        return None
    if not (isinstance(units, str) and units.isdigit() and int(units) > 0):
        return None
    succeeded = intent.get("status") == "succeeded" and int(
        intent.get("amount_received") or 0
    ) >= int(intent.get("amount") or 0)
    purchase = Purchase(
        paid_id=intent["id"],
        kind=EntryKind.PURCHASE,
        credits_units=int(units),
        paid=succeeded,
        note=f"Stripe auto top-up #{sequence}",
    )
    paid = TopUpPaid(
        intent["id"], _metadata_user(intent), int(sequence), succeeded, _refusal(intent)
    )
    return purchase, paid


def _refusal(intent: Obj) -> str | None:
    """Why a PaymentIntent was refused: the last attempt's code once it is back to
    wanting a payment method, or `canceled`; None while it may still be paid."""
    status = intent.get("status")
    if status == "canceled":
        return "canceled"
    error = intent.get("last_payment_error")
    if status == "requires_payment_method" and isinstance(error, dict):
        return str(error.get("code") or "card_declined")
    return None


def _line_price(line: Obj) -> str | None:
    details = (line.get("pricing") or {}).get("price_details") or {}
    return _id(details.get("price")) or _id(line.get("price"))  # legacy shape last


def _is_proration(line: Obj) -> bool:
    parent = line.get("parent") or {}
    for key in ("subscription_item_details", "invoice_item_details"):
        if (parent.get(key) or {}).get("proration"):
            return True
    return bool(line.get("proration"))


def _discounted(invoice: Obj, lines: list[Obj]) -> bool:
    """Whether a coupon took something off the invoice."""
    amounts = list(invoice.get("total_discount_amounts") or [])
    for line in lines:
        amounts += line.get("discount_amounts") or []
    return bool(invoice.get("discounts")) or any(int(a.get("amount") or 0) > 0 for a in amounts)


def invoice_basis(invoice: Obj) -> str:
    """Why an invoice grants what it grants: "paid" (money collected), "free" (a coupon
    took it to $0) or "trial" (a $0 invoice without a discount)."""
    if int(invoice.get("total") or 0) > 0:
        return "paid"
    lines = (invoice.get("lines") or {}).get("data") or []
    return "free" if _discounted(invoice, lines) else "trial"


def invoice_purchase(catalog: BillingSettings, invoice: Obj) -> Purchase | None:
    """A subscription invoice as one period's credits (proration lines buy nothing). How
    many depends on what was paid: see `invoice_basis` and the module docstring."""
    basis = invoice_basis(invoice)
    units, names = 0, []
    for line in (invoice.get("lines") or {}).get("data") or []:
        plan_id = catalog.plan_for_price(_line_price(line))
        if plan_id is None or _is_proration(line):
            continue
        plan = catalog.plans[plan_id]
        per_period = {
            "paid": plan.credits_units,
            "free": plan.free_period_credits_units,
            "trial": plan.trial_credits_units,
        }[basis]
        quantity = int(line.get("quantity") or 1)
        units += per_period * quantity
        names.append(plan_id if quantity == 1 else f"{plan_id} x{quantity}")
    if units == 0:
        return None
    suffix = "" if basis == "paid" else f" ({basis})"
    return Purchase(
        paid_id=invoice["id"],
        kind=EntryKind.SUBSCRIPTION,
        credits_units=units,
        paid=invoice.get("status") == "paid",
        note=f"Stripe invoice: plan {', '.join(names)}{suffix}",
    )


def _invoice_user(invoice: Obj) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return _metadata_user(details) or _metadata_user(invoice)


def _period_end(subscription: Obj) -> datetime | None:
    items = (subscription.get("items") or {}).get("data") or []
    ts = (items[0].get("current_period_end") if items else None) or subscription.get(
        "current_period_end"
    )
    return datetime.fromtimestamp(int(ts), UTC) if ts else None


def _subscription_plan(catalog: BillingSettings, subscription: Obj) -> str | None:
    for item in (subscription.get("items") or {}).get("data") or []:
        plan_id = catalog.plan_for_price(_id(item.get("price")))
        if plan_id is not None:
            return plan_id
    return None


def subscription_state(
    catalog: BillingSettings, subscriptions: list[Obj], customer: Obj | None, read_at: datetime
) -> SubscriptionState:
    """The subscription to show: a live one first, then one not ended, then the newest."""
    ours = [s for s in subscriptions if _subscription_plan(catalog, s) is not None]
    candidates = ours or subscriptions

    def rank(sub: Obj) -> tuple[bool, bool, int]:
        status = sub.get("status")
        return (status in LIVE_STATUSES, status not in ENDED_STATUSES, int(sub["created"]))

    customer_card = card_of(
        ((customer or {}).get("invoice_settings") or {}).get("default_payment_method")
    )
    if not candidates:
        return SubscriptionState(None, None, None, None, customer_card, read_at)
    best = max(candidates, key=rank)
    return SubscriptionState(
        subscription_id=best["id"],
        status=best.get("status"),
        plan=_subscription_plan(catalog, best),
        current_period_end=_period_end(best),
        card=card_of(best.get("default_payment_method")) or customer_card,
        read_at=read_at,
    )


# ------------------------------------------------------------------ reads
async def read_customer_state(billing: Billing, customer_id: str) -> Findings:
    read_at = utcnow()  # before the reads: the state is at least this fresh
    customer = await billing.stripe.retrieve_customer(customer_id)
    subscriptions = (
        [] if customer.get("deleted") else await billing.stripe.subscriptions(customer_id)
    )
    return Findings(
        customer_id=customer_id,
        user_hint=_metadata_user(customer)
        or next((u for s in subscriptions if (u := _metadata_user(s))), None),
        state=subscription_state(billing.catalog, subscriptions, customer, read_at),
    )


async def read_invoice(billing: Billing, invoice_id: str, *, with_state: bool = True) -> Findings:
    invoice = await billing.stripe.retrieve_invoice(invoice_id)
    customer_id = _id(invoice.get("customer"))
    findings = (
        await read_customer_state(billing, customer_id)
        if with_state and customer_id
        else Findings(customer_id=customer_id)
    )
    findings.user_hint = _invoice_user(invoice) or findings.user_hint
    if purchase := invoice_purchase(billing.catalog, invoice):
        findings.purchases.append(purchase)
    return findings


async def read_checkout(billing: Billing, session_id: str) -> Findings:
    session = await billing.stripe.retrieve_checkout_session(session_id)
    customer_id = _id(session.get("customer"))
    hint = _metadata_user(session) or session.get("client_reference_id")
    if session.get("mode") == "subscription":
        invoice_id = _id(session.get("invoice"))
        if invoice_id:
            findings = await read_invoice(billing, invoice_id)
        elif customer_id:
            findings = await read_customer_state(billing, customer_id)
        else:
            findings = Findings()
        findings.customer_id = findings.customer_id or customer_id
        findings.user_hint = hint or findings.user_hint
        return findings
    findings = Findings(customer_id=customer_id, user_hint=hint)
    if purchase := pack_purchase(billing.catalog, session):
        findings.purchases.append(purchase)
        payment_intent = session.get("payment_intent")
        if isinstance(payment_intent, dict):
            findings.card = card_of(payment_intent.get("payment_method"))
    return findings


async def _purchase_for_payment_intent(
    billing: Billing, payment_intent: str
) -> tuple[Findings | None, Purchase | None]:
    for session_id in await billing.stripe.checkout_session_ids(payment_intent=payment_intent):
        found = await read_checkout(billing, session_id)
        if found.purchases:
            return found, found.purchases[0]
    invoice_id = await billing.stripe.invoice_id_for_payment_intent(payment_intent)
    if invoice_id:
        found = await read_invoice(billing, invoice_id, with_state=False)
        if found.purchases:
            return found, found.purchases[0]
    found = await read_payment_intent(billing, payment_intent)  # an auto top-up
    if found.purchases:
        found.top_up = None  # a refund or dispute of it: nothing to record on the attempt
        return found, found.purchases[0]
    return None, None


async def read_payment_intent(billing: Billing, payment_intent_id: str) -> Findings:
    """An auto top-up's PaymentIntent (`top_up_purchase`); empty for any other."""
    intent = await billing.stripe.retrieve_payment_intent(payment_intent_id)
    found = top_up_purchase(intent)
    if found is None:
        return Findings()
    purchase, paid = found
    return Findings(
        customer_id=_id(intent.get("customer")),
        user_hint=paid.user_id,
        purchases=[purchase],
        top_up=paid,
    )


async def _charge_findings(billing: Billing, charge: Obj) -> tuple[Findings, Purchase | None]:
    """Whose charge, the purchase it paid for, and the refunds so far."""
    payment_intent = _id(charge.get("payment_intent"))
    found, purchase = (
        await _purchase_for_payment_intent(billing, payment_intent)
        if payment_intent
        else (None, None)
    )
    findings = found or Findings()
    findings.customer_id = findings.customer_id or _id(charge.get("customer"))
    findings.user_hint = findings.user_hint or _metadata_user(charge)
    findings.card = None  # a refund says nothing about the card to show
    refunded = int(charge.get("amount_refunded") or 0)
    if purchase is not None and refunded > 0:
        findings.reversals.append(Reversal(purchase, int(charge.get("amount") or 0), refunded))
    return findings, purchase


def _dispute_of(charge: Obj, purchase: Purchase, dispute: Obj) -> Dispute:
    charged = int(charge.get("amount") or 0)
    amount = int(dispute.get("amount") or 0)
    return Dispute(
        dispute_id=dispute["id"],
        purchase=purchase,
        charge_amount=charged,
        refunded_amount=min(int(charge.get("amount_refunded") or 0), max(charged - amount, 0)),
        amount=amount,
        status=str(dispute.get("status") or ""),
    )


async def read_charge(billing: Billing, charge_id: str) -> Findings:
    """A refunded charge: the purchase it paid for and how much was refunded."""
    charge = await billing.stripe.retrieve_charge(charge_id)
    findings, _ = await _charge_findings(billing, charge)
    return findings


async def read_dispute(billing: Billing, dispute_id: str) -> Findings:
    """A dispute in its current state, with the purchase its charge paid for."""
    dispute = await billing.stripe.retrieve_dispute(dispute_id)
    charge_id = _id(dispute.get("charge"))
    if not charge_id:
        return Findings()
    charge = await billing.stripe.retrieve_charge(charge_id)
    findings, purchase = await _charge_findings(billing, charge)
    if purchase is not None:
        findings.disputes.append(_dispute_of(charge, purchase, dispute))
    return findings


async def read_customer(billing: Billing, customer_id: str) -> Findings:
    """Everything about a customer (for `billing sync`): state, paid purchases, reversals."""
    findings = await read_customer_state(billing, customer_id)
    seen: set[str] = set()
    for session_id in await billing.stripe.checkout_session_ids(customer=customer_id):
        found = await read_checkout(billing, session_id)
        for purchase in found.purchases:
            if purchase.paid and purchase.kind == EntryKind.PURCHASE:
                findings.purchases.append(purchase)
                seen.add(purchase.paid_id)
                findings.card = findings.card or found.card
    for invoice in await billing.stripe.paid_invoices(customer_id):
        period = invoice_purchase(billing.catalog, invoice)
        if period is not None and period.paid_id not in seen:
            findings.purchases.append(period)
            seen.add(period.paid_id)
    for charge in await billing.stripe.charges(customer_id):
        if charge.get("status") != "succeeded":
            continue
        if not (int(charge.get("amount_refunded") or 0) > 0 or charge.get("disputed")):
            continue
        found, paid_for = await _charge_findings(billing, charge)
        findings.reversals += found.reversals
        if paid_for is not None and charge.get("disputed"):
            for dispute in await billing.stripe.disputes(charge=charge["id"]):
                findings.disputes.append(_dispute_of(charge, paid_for, dispute))
    return findings


async def customer_user_hint(billing: Billing, customer_id: str) -> str | None:
    """The user id an operator (or we) put in the customer's metadata, if any."""
    customer = await billing.stripe.retrieve_customer(customer_id)
    return None if customer.get("deleted") else _metadata_user(customer)
