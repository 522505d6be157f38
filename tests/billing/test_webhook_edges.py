"""Signed deliveries that still must not be applied: a `data.object` that is not what the
event type promises gets a 4xx (never a 500, which Stripe would retry for days), and a
signature dated beyond the tolerance in the future is refused like a stale one."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from portal.billing.runtime import Billing
from portal.db import Database
from tests.billing.conftest import UNITS, MakeBuyer, books, event_of, start_checkout
from tests.fakes.stripe_api import FakeStripe


def with_object(event: dict[str, Any], type_: str, data: Any) -> dict[str, Any]:
    forged = copy.deepcopy(event)
    forged["id"] = f"{event['id']}x{abs(hash(repr(data))) % 10**6}"
    forged["type"] = type_
    forged["data"] = data
    return forged


MALFORMED = [
    ("checkout.session.completed", {"object": []}),
    ("checkout.session.completed", {"object": "cs_test_1"}),
    ("checkout.session.completed", {"object": {}}),
    ("checkout.session.completed", {"object": {"object": "checkout.session", "id": 5}}),
    ("checkout.session.completed", {"object": {"object": "checkout.session", "id": "../x"}}),
    ("checkout.session.completed", {"object": {"object": "invoice", "id": "in_1"}}),
    ("checkout.session.completed", "not an object"),
    ("invoice.paid", {"object": None}),
    (
        "customer.subscription.updated",
        {"object": {"object": "subscription", "id": "sub_1", "customer": ["cus_1"]}},
    ),
    ("charge.refunded", {"object": {"object": "charge"}}),
    ("charge.dispute.created", {"object": {"object": "dispute", "id": {"nested": 1}}}),
]


@pytest.mark.parametrize(("type_", "data"), MALFORMED)
async def test_a_signed_event_with_a_malformed_object_gets_a_400_and_writes_nothing(
    stripe_fake: FakeStripe,
    billing: Billing,
    db: Database,
    make_buyer: MakeBuyer,
    type_: str,
    data: Any,
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.auto_deliver = False
    completed = event_of(stripe_fake.complete_checkout(session_id), "checkout.session.completed")
    answer = await stripe_fake.adeliver(with_object(completed, type_, data))
    assert answer.status_code == 400, answer.text
    assert "error" in answer.json()
    after = await books(db, buyer.user_id)
    assert (after.balance, after.events) == (0, 0)


async def test_a_signature_dated_in_the_future_is_refused(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.auto_deliver = False
    completed = event_of(stripe_fake.complete_checkout(session_id), "checkout.session.completed")

    for ahead in (60 * 60, 6 * 60):  # an hour, and just beyond the 5-minute tolerance
        early = await stripe_fake.adeliver(completed, timestamp=int(time.time()) + ahead)
        assert early.status_code == 400
    after = await books(db, buyer.user_id)
    assert (after.balance, after.events) == (0, 0)

    # a clock a minute fast is within the tolerance, as for old timestamps
    skewed = await stripe_fake.adeliver(completed, timestamp=int(time.time()) + 60)
    assert skewed.status_code == 200
    assert (await books(db, buyer.user_id)).balance == 10 * UNITS
