"""The fake Stripe is only useful if the real ``stripe`` SDK cannot tell it from Stripe.

The calls are billing's own (`StripeGateway`, the SDK's async client over httpx), so
every endpoint billing uses is exercised the way billing uses it; webhooks are checked
with ``stripe.Webhook.construct_event``, as the portal checks them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import stripe
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portal.billing.stripe_gateway import StripeGateway

from .stripe_api import FakeStripe, parse_stripe_form, sign_payload

SUCCESS = "https://portal.test/billing/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL = "https://portal.test/billing/cancel"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as f:
        yield f


@pytest.fixture
async def gateway(fake: FakeStripe) -> AsyncIterator[StripeGateway]:
    gw = StripeGateway(fake.secret_key, api_base=fake.url, max_network_retries=0)
    yield gw
    await gw.aclose()


class Receiver:
    """A webhook endpoint (starlette + uvicorn in a thread) that verifies signatures."""

    def __init__(self, secret: str) -> None:
        self.events: list[stripe.Event] = []

        async def hook(request: Request) -> Response:
            body, sig = await request.body(), request.headers.get("stripe-signature", "")
            try:
                self.events.append(stripe.Webhook.construct_event(body, sig, secret))
            except stripe.SignatureVerificationError:
                return Response(status_code=400)
            return Response(status_code=200)

        app = Starlette(routes=[Route("/webhook", hook, methods=["POST"])])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhook"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", http="h11")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True
        )
        self.thread.start()
        while not self.server.started:
            time.sleep(0.005)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture
def receiver(fake: FakeStripe) -> Iterator[Receiver]:
    r = Receiver(fake.webhook_secret)
    fake.webhook_url, fake.auto_deliver = r.url, True
    yield r
    fake.wait_for_deliveries()
    fake.webhook_url = None
    r.stop()
    assert not fake.errors, fake.errors


async def _checkout(gw: StripeGateway, fake: FakeStripe, mode: str, **extra: object) -> str:
    interval = "month" if mode == "subscription" else None
    price = fake.create_price(unit_amount=500, recurring_interval=interval, product_name="Pro")
    user = f"user-{time.monotonic_ns()}"
    customer = await gw.create_customer(email=f"{user}@example.com", user_id=user)
    session = await gw.create_checkout_session(
        {
            "mode": mode,
            "customer": customer["id"],
            "client_reference_id": user,
            "line_items": [{"price": price, "quantity": 2}],
            "success_url": SUCCESS,
            "cancel_url": CANCEL,
            "metadata": {"user_id": user},
            **extra,
        }
    )
    return str(session["id"])


def test_parse_stripe_form_handles_brackets_lists_and_appends() -> None:
    parsed = parse_stripe_form(
        [
            ("line_items[0][price]", "price_a"),
            ("line_items[0][quantity]", "2"),
            ("metadata[user_id]", "42"),
            ("payment[payment_intent]", "pi_1"),
            ("expand[]", "line_items"),
            ("expand[]", "payment_intent.payment_method"),
        ]
    )
    assert parsed == {
        "line_items": [{"price": "price_a", "quantity": "2"}],
        "metadata": {"user_id": "42"},
        "payment": {"payment_intent": "pi_1"},
        "expand": ["line_items", "payment_intent.payment_method"],
    }


async def test_customers_as_billing_makes_and_finds_them(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    first = await gateway.create_customer(email="ada@example.com", user_id="u-ada")
    again = await gateway.create_customer(email="ada@example.com", user_id="u-ada")
    assert again["id"] == first["id"]  # the same idempotency key: Stripe replays
    assert first["object"] == "customer" and first["metadata"] == {"user_id": "u-ada"}
    assert fake.requests[-1][2]["metadata"] == {"user_id": "u-ada"}  # metadata[user_id]=…
    assert await gateway.find_customer_ids("u-ada") == [first["id"]]
    assert await gateway.find_customer_ids("u-nobody") == []
    got = await gateway.retrieve_customer(first["id"])
    assert got["email"] == "ada@example.com"
    assert got["invoice_settings"]["default_payment_method"] is None

    updated = await gateway.client.v1.customers.update_async(
        first["id"], {"metadata": {"plan": "pro"}}
    )
    assert updated.to_dict()["metadata"] == {"user_id": "u-ada", "plan": "pro"}
    with pytest.raises(stripe.IdempotencyError):  # the same key, other parameters
        await gateway.client.v1.customers.create_async(
            {"email": "eve@example.com"}, {"idempotency_key": "wfg-customer-u-ada"}
        )


async def test_a_pack_checkout_reads_as_billing_reads_it(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    session_id = await _checkout(
        gateway, fake, "payment", payment_intent_data={"metadata": {"pack": "small"}}
    )
    session = await gateway.retrieve_checkout_session(session_id)
    assert session["url"] == f"{fake.url}/pay/{session_id}" and session["status"] == "open"
    assert session["amount_total"] == 1000 and session["payment_status"] == "unpaid"

    events = fake.complete_checkout(session_id)
    assert [e["type"] for e in events] == [
        "checkout.session.completed",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    session = await gateway.retrieve_checkout_session(session_id)
    assert (session["status"], session["payment_status"]) == ("complete", "paid")
    [item] = session["line_items"]["data"]
    assert (item["quantity"], item["price"]["unit_amount"]) == (2, 500)
    intent = session["payment_intent"]
    assert intent["metadata"] == {"pack": "small"}
    card = intent["payment_method"]["card"]
    assert (card["brand"], card["last4"]) == ("visa", "4242")

    customer = session["customer"]
    assert await gateway.checkout_session_ids(customer=customer) == [session_id]
    assert await gateway.checkout_session_ids(payment_intent=intent["id"]) == [session_id]
    [charge] = await gateway.charges(customer)
    assert (await gateway.retrieve_charge(charge["id"]))["payment_intent"] == intent["id"]
    assert await gateway.invoice_id_for_payment_intent(intent["id"]) is None


async def test_a_subscription_its_invoices_refunds_and_disputes(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    session_id = await _checkout(gateway, fake, "subscription")
    fake.complete_checkout(session_id)
    session = await gateway.retrieve_checkout_session(session_id)
    customer = session["customer"]
    [sub] = await gateway.subscriptions(customer)
    assert sub["id"] == session["subscription"] and sub["status"] == "active"
    item = sub["items"]["data"][0]
    assert item["current_period_end"] > item["current_period_start"]
    assert sub["default_payment_method"]["card"]["last4"] == "4242"  # data.… expanded
    got = await gateway.retrieve_customer(customer)
    assert got["invoice_settings"]["default_payment_method"]["type"] == "card"

    invoice = await gateway.retrieve_invoice(session["invoice"])
    assert (invoice["status"], invoice["total"], invoice["customer"]) == ("paid", 1000, customer)
    assert invoice["parent"]["subscription_details"]["subscription"] == sub["id"]
    line = invoice["lines"]["data"][0]
    assert line["pricing"]["price_details"]["price"] == item["price"]["id"]

    fake.renew_subscription(sub["id"])
    paid = await gateway.paid_invoices(customer)
    assert [i["billing_reason"] for i in paid] == ["subscription_cycle", "subscription_create"]
    charges = await gateway.charges(customer)
    intent = charges[-1]["payment_intent"]
    assert await gateway.invoice_id_for_payment_intent(intent) == invoice["id"]

    fake.refund_charge(charges[0]["id"], amount=300)
    fake.dispute_charge(charges[0]["id"])
    charge = await gateway.retrieve_charge(charges[0]["id"])
    assert (charge["amount_refunded"], charge["refunded"], charge["disputed"]) == (300, False, True)
    [dispute] = await gateway.disputes(charge=charge["id"])
    assert (dispute["amount"], dispute["status"]) == (700, "needs_response")
    assert (await gateway.retrieve_dispute(dispute["id"]))["charge"] == charge["id"]

    canceled = await gateway.cancel_subscription(sub["id"])
    assert canceled["status"] == "canceled"
    assert [s["status"] for s in await gateway.subscriptions(customer)] == ["canceled"]
    with pytest.raises(stripe.InvalidRequestError) as err:
        await gateway.cancel_subscription(sub["id"])
    assert (err.value.http_status, err.value.code) == (404, "resource_missing")


async def test_billing_portal_session_and_events(fake: FakeStripe, gateway: StripeGateway) -> None:
    customer = await gateway.create_customer(email="p@example.com", user_id="u-portal")
    portal = await gateway.create_portal_session(
        customer=customer["id"], return_url="https://portal.test/billing"
    )
    assert portal["object"] == "billing_portal.session"
    assert portal["url"] == f"{fake.url}/portal/{portal['id']}"
    async with httpx.AsyncClient() as browser:
        page = await browser.get(portal["url"])
    assert 'id="return" href="https://portal.test/billing"' in page.text

    [created] = [e for e in fake.events.values() if e["data"]["object"]["id"] == customer["id"]]
    event = await gateway.retrieve_event(created["id"])
    assert event["type"] == "customer.created" and event["request"]["id"].startswith("req_")


async def test_errors_are_the_sdks_exceptions(fake: FakeStripe, gateway: StripeGateway) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        await gateway.retrieve_checkout_session("cs_test_nope")
    assert (err.value.http_status, err.value.code) == (404, "resource_missing")
    assert str(err.value.request_id).startswith("req_")
    with pytest.raises(stripe.InvalidRequestError) as err:
        await gateway.create_portal_session(customer="cus_nope", return_url=CANCEL)
    assert (err.value.http_status, err.value.param) == (400, "customer")
    with pytest.raises(stripe.InvalidRequestError, match="recurring price"):
        price = fake.create_price(unit_amount=100, recurring_interval="month")
        await gateway.create_checkout_session(
            {"mode": "payment", "line_items": [{"price": price, "quantity": 1}]}
        )
    with pytest.raises(stripe.InvalidRequestError, match="Unrecognized request URL"):
        await gateway.client.v1.refunds.create_async({"charge": "ch_1"})

    wrong = StripeGateway("sk_test_wrongkey", api_base=fake.url, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError) as auth:
        await wrong.retrieve_customer("cus_x")
    await wrong.aclose()
    assert auth.value.user_message == "Invalid API Key provided: sk_test_****gkey"


async def test_lists_page_through_starting_after(fake: FakeStripe, gateway: StripeGateway) -> None:
    customer = fake.create_customer(email="many@example.com")
    price = fake.create_price(unit_amount=100)
    params = {"mode": "payment", "customer": customer, "line_items": [{"price": price}]}
    ids = [(await gateway.create_checkout_session(params))["id"] for _ in range(3)]
    page = await gateway.client.v1.checkout.sessions.list_async({"customer": customer, "limit": 2})
    assert page.has_more and [s.id async for s in page.auto_paging_iter()] == ids[::-1]


def test_signatures_verify_with_the_sdk(fake: FakeStripe) -> None:
    event = {"id": "evt_1", "object": "event", "type": "invoice.paid", "data": {"object": {}}}
    payload = json.dumps(event)
    header = sign_payload(payload, fake.webhook_secret)
    parsed = stripe.Webhook.construct_event(payload, header, fake.webhook_secret)
    assert (parsed.id, parsed.type) == ("evt_1", "invoice.paid")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_someone_else")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload + " ", header, fake.webhook_secret)
    stale = sign_payload(payload, fake.webhook_secret, timestamp=int(time.time()) - 301)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(payload, stale, fake.webhook_secret, tolerance=300)


async def test_deliveries_are_signed_and_timed_like_stripes(
    fake: FakeStripe, gateway: StripeGateway, receiver: Receiver
) -> None:
    session_id = await _checkout(gateway, fake, "payment")  # customer.created: background
    fake.wait_for_deliveries()
    assert [e.type for e in receiver.events] == ["customer.created"]

    async with httpx.AsyncClient() as browser:  # Pay on the hosted page
        page = await browser.get(f"{fake.url}/pay/{session_id}")
        assert "$10.00" in page.text and f'id="cancel" href="{CANCEL}"' in page.text
        paid = await browser.post(f"{fake.url}/pay/{session_id}")
    assert paid.status_code == 303
    assert paid.headers["location"] == SUCCESS.replace("{CHECKOUT_SESSION_ID}", session_id)
    # delivered before the redirect, so the success page can already see the credits
    assert receiver.events[1].type == "checkout.session.completed"
    assert receiver.events[1].data.object.id == session_id

    completed = fake.events[receiver.events[1].id]
    assert (await fake.adeliver(completed)).status_code == 200
    assert (await fake.adeliver(completed, signature_secret="whsec_x")).status_code == 400
    stale = await fake.adeliver(completed, timestamp=int(time.time()) - 3600)
    assert stale.status_code == 400
    assert [d["status_code"] for d in fake.deliveries[-3:]] == [200, 400, 400]


async def test_off_session_payments_on_a_card_a_checkout_saved(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    """Auto top-up's calls: the card a Checkout saved (`setup_future_usage`), charged
    off-session; a success, a decline and 3-D Secure as the SDK raises them; a repeated
    idempotency key answers the first answer and charges nothing more."""
    session_id = await _checkout(
        gateway, fake, "payment", payment_intent_data={"setup_future_usage": "off_session"}
    )
    fake.complete_checkout(session_id)
    customer = (await gateway.retrieve_checkout_session(session_id))["customer"]
    card = await gateway.saved_card(customer)
    assert card is not None and fake.payment_methods[card]["customer"] == customer

    def pay(key: str) -> dict:
        return {
            "customer": customer,
            "payment_method": card,
            "amount": 500,
            "currency": "usd",
            "metadata": {"wfg_auto_top_up": "1"},
            "description": "Auto top-up",
            "idempotency_key": key,
        }

    intent = await gateway.charge_off_session(**pay("k-1"))
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 500)
    again = await gateway.charge_off_session(**pay("k-1"))
    assert again["id"] == intent["id"]
    assert len([c for c in fake.charges.values() if c["payment_intent"] == intent["id"]]) == 1
    succeeded = fake.events_of("payment_intent.succeeded", wfg_auto_top_up="1")
    assert [e["data"]["object"]["id"] for e in succeeded] == [intent["id"]]

    refusals = (("decline", "card_declined"), ("authentication_required",) * 2)
    for outcome, code in refusals:
        fake.set_off_session_outcome(customer, outcome)
        with pytest.raises(stripe.CardError) as refused:
            await gateway.charge_off_session(**pay(f"k-{outcome}"))
        assert refused.value.http_status == 402 and refused.value.code == code
        failed = refused.value.error.payment_intent
        assert failed is not None and failed["status"] == "requires_payment_method"
        read = await gateway.retrieve_payment_intent(failed["id"])
        assert read["last_payment_error"]["code"] == code
        with pytest.raises(stripe.CardError):  # replayed, not charged again
            await gateway.charge_off_session(**pay(f"k-{outcome}"))
    fake.off_session_outcomes.pop(customer)


async def test_without_a_saved_card_there_is_nothing_to_charge(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    session_id = await _checkout(gateway, fake, "payment")  # no setup_future_usage
    fake.complete_checkout(session_id)
    customer = (await gateway.retrieve_checkout_session(session_id))["customer"]
    assert await gateway.saved_card(customer) is None
