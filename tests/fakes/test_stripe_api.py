"""The fake Stripe is only useful if the real ``stripe`` SDK cannot tell it from Stripe.

Every test drives the SDK (``StripeClient`` or the module-level API) or the raw wire
format with httpx, and checks what came back.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .stripe_api import FakeStripe, parse_stripe_form, sign_payload

SUCCESS = "https://portal.test/billing/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL = "https://portal.test/billing"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as f:
        yield f


@pytest.fixture(scope="module")
def browser() -> Iterator[httpx.Client]:
    """Plays the browser on the hosted pages (one client: creating one is slow)."""
    with httpx.Client() as http:
        yield http


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.url})


class Receiver:
    """A tiny webhook endpoint (starlette + uvicorn in a thread) that verifies signatures."""

    def __init__(self, secret: str, status: int = 200) -> None:
        self.secret, self.status = secret, status
        self.events: list[stripe.Event] = []
        self.raw: list[tuple[bytes, str]] = []

        async def hook(request: Request) -> Response:
            body = await request.body()
            sig = request.headers.get("stripe-signature", "")
            self.raw.append((body, sig))
            try:
                event = stripe.Webhook.construct_event(body, sig, self.secret)
            except stripe.SignatureVerificationError:
                return Response(status_code=400)
            self.events.append(event)
            return Response(status_code=self.status)

        app = Starlette(routes=[Route("/webhook", hook, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhook"
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", http="h11")
        )
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
    fake.webhook_url = r.url
    yield r
    r.stop()


def _payment_session(client: stripe.StripeClient, fake: FakeStripe, **extra: Any) -> Any:
    price = fake.create_price(unit_amount=500, product_name="500 credits")
    return client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price": price, "quantity": 2}],
            "success_url": SUCCESS,
            "cancel_url": CANCEL,
            "client_reference_id": "user-42",
            "metadata": {"user_id": "42", "credits": "1000"},
            **extra,
        }
    )


def _subscription(fake: FakeStripe, client: stripe.StripeClient) -> tuple[Any, Any]:
    price = fake.create_price(unit_amount=2000, recurring_interval="month", product_name="Pro")
    cus = client.v1.customers.create(params={"email": "sub@example.com"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": cus.id,
            "line_items": [{"price": price, "quantity": 1}],
            "success_url": SUCCESS,
            "subscription_data": {"metadata": {"user_id": "7"}},
        }
    )
    fake.complete_checkout(session.id)
    session = client.v1.checkout.sessions.retrieve(session.id)
    return session, client.v1.subscriptions.retrieve(session.subscription)


# --------------------------------------------------------------------------- wire format
def test_parse_stripe_form_handles_brackets_lists_and_appends() -> None:
    parsed = parse_stripe_form(
        [
            ("mode", "payment"),
            ("line_items[0][price]", "price_a"),
            ("line_items[0][quantity]", "2"),
            ("line_items[1][price_data][product_data][name]", "Credits"),
            ("metadata[user_id]", "42"),
            ("expand[]", "customer"),
            ("expand[]", "line_items"),
        ]
    )
    assert parsed == {
        "mode": "payment",
        "line_items": [
            {"price": "price_a", "quantity": "2"},
            {"price_data": {"product_data": {"name": "Credits"}}},
        ],
        "metadata": {"user_id": "42"},
        "expand": ["customer", "line_items"],
    }


def test_raw_wire_format_auth_shapes_and_lists(fake: FakeStripe) -> None:
    price = fake.create_price(unit_amount=1000)
    auth = {"Authorization": f"Bearer {fake.secret_key}"}
    with httpx.Client(base_url=fake.url, headers=auth) as http:
        r = http.post(
            "/v1/checkout/sessions",
            content=(
                f"mode=payment&line_items[0][price]={price}&line_items[0][quantity]=3"
                "&metadata[user_id]=9&success_url=https://x.test/ok&expand[]=line_items"
            ),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["request-id"].startswith("req_")
        body = r.json()
        assert body["object"] == "checkout.session" and body["id"].startswith("cs_test_")
        assert body["livemode"] is False and isinstance(body["created"], int)
        assert body["metadata"] == {"user_id": "9"} and body["amount_total"] == 3000
        assert body["line_items"]["object"] == "list"
        assert body["line_items"]["data"][0]["price"]["id"] == price

        listed = http.get("/v1/checkout/sessions", params={"limit": 1}).json()
        assert set(listed) == {"object", "data", "has_more", "url"}
        assert listed["object"] == "list" and listed["url"] == "/v1/checkout/sessions"

        missing = http.get("/v1/customers/cus_nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "invalid_request_error"
        assert missing.json()["error"]["code"] == "resource_missing"

        unknown = http.get("/v1/not_a_thing")
        assert unknown.status_code == 404
        assert "Unrecognized request URL" in unknown.json()["error"]["message"]

        no_key = http.get("/v1/customers", headers={"Authorization": ""})
        assert no_key.status_code == 401
        assert no_key.json()["error"]["type"] == "invalid_request_error"


# ------------------------------------------------------------------------- REST via SDK
def test_customers_with_stripe_client(fake: FakeStripe, client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(
        params={"email": "ada@example.com", "name": "Ada", "metadata": {"user_id": "42"}}
    )
    assert cus.id.startswith("cus_") and cus.object == "customer"
    assert cus.metadata["user_id"] == "42"
    assert cus.invoice_settings.default_payment_method is None
    assert fake.requests[-1][2]["metadata"] == {"user_id": "42"}  # sent as metadata[user_id]

    got = client.v1.customers.retrieve(cus.id)
    assert got.email == "ada@example.com"
    listed = client.v1.customers.list(params={"email": "ada@example.com"})
    assert [c.id for c in listed.data] == [cus.id]
    found = client.v1.customers.search(params={"query": "metadata['user_id']:'42'"})
    assert [c.id for c in found.data] == [cus.id]

    updated = client.v1.customers.update(cus.id, params={"metadata": {"plan": "pro"}})
    assert updated.metadata.to_dict() == {"user_id": "42", "plan": "pro"}
    assert [e["type"] for e in fake.events.values()] == ["customer.created", "customer.updated"]


def test_pagination_with_auto_paging_iter(fake: FakeStripe, client: stripe.StripeClient) -> None:
    ids = [client.v1.customers.create(params={"email": f"{i}@x.test"}).id for i in range(5)]
    page = client.v1.customers.list(params={"limit": 2})
    assert page.has_more is True and len(page.data) == 2
    assert [c.id for c in page.auto_paging_iter()] == ids[::-1]  # newest first


def test_checkout_payment_mode(fake: FakeStripe, client: stripe.StripeClient) -> None:
    session = _payment_session(client, fake)
    assert session.status == "open" and session.payment_status == "unpaid"
    assert session.url == f"{fake.url}/pay/{session.id}"
    assert session.success_url == SUCCESS  # the placeholder is substituted on redirect only
    assert session.amount_total == 1000 and session.currency == "usd"
    assert session.client_reference_id == "user-42" and session.payment_intent is None

    events = fake.complete_checkout(session.id)
    assert [e["type"] for e in events] == [
        "checkout.session.completed",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    completed = events[0]["data"]["object"]
    assert completed["status"] == "complete" and completed["payment_status"] == "paid"
    assert completed["metadata"] == {"user_id": "42", "credits": "1000"}
    assert list(fake.events) == [e["id"] for e in events]

    got = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["payment_intent.latest_charge", "line_items"]}
    )
    pi = got.payment_intent
    assert pi.object == "payment_intent" and pi.status == "succeeded" and pi.amount == 1000
    charge = pi.latest_charge
    assert charge.payment_intent == pi.id and charge.amount_refunded == 0
    assert charge.payment_method_details.card.brand == "visa"
    assert charge.payment_method_details.card.last4 == "4242"
    assert got.line_items.data[0].quantity == 2
    assert got.line_items.data[0].description == "500 credits"

    items = client.v1.checkout.sessions.line_items.list(session.id)
    assert items.object == "list" and items.data[0].amount_total == 1000
    pm = client.v1.payment_methods.retrieve(charge.payment_method)
    assert pm.card.last4 == "4242"


def test_checkout_subscription_mode_module_level_api(fake: FakeStripe) -> None:
    price = fake.create_price(unit_amount=2000, recurring_interval="month", product_name="Pro")
    with fake.use_globally():
        assert stripe.api_base == fake.url
        cus = stripe.Customer.create(email="pro@example.com")
        session = stripe.checkout.Session.create(
            mode="subscription",
            customer=cus.id,
            line_items=[{"price": price, "quantity": 1}],
            success_url=SUCCESS,
            cancel_url=CANCEL,
            metadata={"user_id": "7"},
        )
        events = fake.complete_checkout(session.id)
        types = [e["type"] for e in events]
        assert types[:2] == ["checkout.session.completed", "customer.subscription.created"]
        assert "invoice.paid" in types

        got = stripe.checkout.Session.retrieve(
            session.id, expand=["subscription", "subscription.latest_invoice"]
        )
        sub = got.subscription
        assert sub.status == "active" and sub.customer == cus.id
        item = sub["items"].data[0]  # `.items` is dict.items on StripeObject
        assert item.price.id == price and item.price.recurring.interval == "month"
        assert item.current_period_end > item.current_period_start >= sub.start_date
        assert sub.current_period_end == item.current_period_end  # legacy place, too
        inv = sub.latest_invoice
        assert inv.status == "paid" and inv.amount_paid == 2000
        assert inv.billing_reason == "subscription_create" and inv.customer == cus.id
        assert inv.parent.subscription_details.subscription == sub.id
        assert inv.subscription == sub.id  # legacy field
        line = inv.lines.data[0]
        assert line.pricing.price_details.price == price and line.price.id == price
        assert line.period.end == item.current_period_end

        customer = stripe.Customer.retrieve(
            cus.id, expand=["invoice_settings.default_payment_method"]
        )
        card = customer.invoice_settings.default_payment_method.card
        assert (card.brand, card.last4) == ("visa", "4242")
        assert [s.id for s in stripe.Subscription.list(customer=cus.id).data] == [sub.id]
        assert stripe.Invoice.retrieve(inv.id).id == inv.id


async def test_async_sdk_over_plain_http(fake: FakeStripe, client: stripe.StripeClient) -> None:
    cus = await client.v1.customers.create_async(params={"email": "async@example.com"})
    got = await client.v1.customers.retrieve_async(cus.id)
    assert got.email == "async@example.com"
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.subscriptions.retrieve_async("sub_missing")


def test_billing_portal_session_and_page(
    fake: FakeStripe, client: stripe.StripeClient, browser: httpx.Client
) -> None:
    cus = client.v1.customers.create(params={"email": "p@example.com"})
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": cus.id, "return_url": "https://portal.test/account"}
    )
    assert portal.id.startswith("bps_") and portal.object == "billing_portal.session"
    assert portal.url == f"{fake.url}/portal/{portal.id}" and portal.customer == cus.id
    page = browser.get(portal.url)
    assert page.status_code == 200
    assert 'id="return" href="https://portal.test/account"' in page.text
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.billing_portal.sessions.create(params={"customer": "cus_nope"})
    assert err.value.http_status == 400 and err.value.param == "customer"


def test_cancel_and_update_subscription(fake: FakeStripe, client: stripe.StripeClient) -> None:
    _, sub = _subscription(fake, client)
    assert sub.metadata["user_id"] == "7"  # from subscription_data[metadata]
    updated = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert updated.cancel_at_period_end is True
    last = list(fake.events.values())[-1]
    assert last["type"] == "customer.subscription.updated"
    assert last["data"]["previous_attributes"]["cancel_at_period_end"] is False
    assert last["request"]["id"] is not None  # caused by an API request

    canceled = client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled" and canceled.canceled_at is not None
    assert list(fake.events.values())[-1]["type"] == "customer.subscription.deleted"
    assert client.v1.subscriptions.list(params={"customer": sub.customer}).data == []
    assert len(client.v1.subscriptions.list(params={"status": "all"}).data) == 1
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.subscriptions.cancel(sub.id)
    assert err.value.http_status == 404 and err.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError, match="canceled subscription"):
        client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False})


# -------------------------------------------------------------------------------- errors
def test_errors_map_to_sdk_exceptions(fake: FakeStripe, client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert err.value.http_status == 404 and err.value.code == "resource_missing"
    assert err.value.user_message == "No such customer: 'cus_doesnotexist'"
    assert err.value.request_id.startswith("req_")
    for call in (
        lambda: client.v1.checkout.sessions.retrieve("cs_test_nope"),
        lambda: client.v1.invoices.retrieve("in_nope"),
        lambda: client.v1.charges.retrieve("ch_nope"),
        lambda: client.v1.payment_intents.retrieve("pi_nope"),
        lambda: client.v1.events.retrieve("evt_nope"),
    ):
        with pytest.raises(stripe.InvalidRequestError):
            call()

    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.checkout.sessions.create(params={"mode": "payment", "success_url": SUCCESS})
    assert err.value.http_status == 400 and err.value.param == "line_items"
    with pytest.raises(stripe.InvalidRequestError, match="recurring price"):
        price = fake.create_price(unit_amount=100, recurring_interval="month")
        client.v1.checkout.sessions.create(
            params={"mode": "payment", "line_items": [{"price": price, "quantity": 1}]}
        )
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded"):
        client.v1.customers.retrieve(client.v1.customers.create().id, params={"expand": ["email"]})

    wrong = stripe.StripeClient("sk_test_wrongkey", base_addresses={"api": fake.url})
    with pytest.raises(stripe.AuthenticationError) as auth:
        wrong.v1.customers.list()
    assert auth.value.http_status == 401
    assert auth.value.user_message == "Invalid API Key provided: sk_test_****gkey"


def test_idempotent_replay(fake: FakeStripe, client: stripe.StripeClient) -> None:
    opts = {"idempotency_key": "signup-42"}
    a = client.v1.customers.create(params={"email": "i@example.com"}, options=opts)
    b = client.v1.customers.create(params={"email": "i@example.com"}, options=opts)
    assert a.id == b.id and len(fake.customers) == 1
    assert b.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"email": "other@example.com"}, options=opts)


# ------------------------------------------------------------------------ lifecycle helpers
def test_async_payment_settlement(fake: FakeStripe, client: stripe.StripeClient) -> None:
    session = _payment_session(client, fake)
    events = fake.complete_checkout(session.id, async_payment=True)
    assert events[0]["data"]["object"]["payment_status"] == "unpaid"
    events = fake.settle_async_payment(session.id, succeeded=True)
    assert events[0]["type"] == "checkout.session.async_payment_succeeded"
    assert events[0]["data"]["object"]["payment_status"] == "paid"

    declined = _payment_session(client, fake)
    events = fake.complete_checkout(declined.id, paid=False)
    assert [e["type"] for e in events] == ["charge.failed", "payment_intent.payment_failed"]
    assert client.v1.checkout.sessions.retrieve(declined.id).status == "open"


def test_renewal_failure_refund_and_dispute(fake: FakeStripe, client: stripe.StripeClient) -> None:
    _, sub = _subscription(fake, client)
    first_end = sub["items"].data[0].current_period_end

    events = fake.renew_subscription(sub.id)
    paid = next(e["data"]["object"] for e in events if e["type"] == "invoice.paid")
    assert paid["billing_reason"] == "subscription_cycle" and paid["amount_paid"] == 2000
    assert paid["period_end"] == first_end  # invoice period = the period just ended
    assert paid["lines"]["data"][0]["period"]["start"] == first_end
    renewed = client.v1.subscriptions.retrieve(sub.id)
    assert renewed["items"].data[0].current_period_start == first_end

    events = fake.fail_invoice_payment(sub.id)
    types = [e["type"] for e in events]
    assert "invoice.payment_failed" in types and types[-1] == "customer.subscription.updated"
    assert events[-1]["data"]["object"]["status"] == "past_due"
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"

    events = fake.update_subscription(sub.id, metadata={"tier": "gold"})
    assert [e["type"] for e in events] == ["customer.subscription.updated"]
    assert events[0]["data"]["previous_attributes"] == {"metadata": {"user_id": "7"}}

    charge_id = next(iter(fake.charges))
    events = fake.refund_charge(charge_id, amount=500)
    assert [e["type"] for e in events] == ["charge.refunded"]
    charge = client.v1.charges.retrieve(charge_id)
    assert (charge.amount_refunded, charge.refunded) == (500, False)
    fake.refund_charge(charge_id)
    assert client.v1.charges.retrieve(charge_id).refunded is True

    events = fake.dispute_charge(charge_id)
    assert events[0]["type"] == "charge.dispute.created"
    assert events[0]["data"]["object"]["charge"] == charge_id

    listed = client.v1.events.list(params={"type": "invoice.*", "limit": 100})
    assert {e.type for e in listed.data} >= {"invoice.paid", "invoice.payment_failed"}
    evt = client.v1.events.retrieve(events[0]["id"])
    assert evt.type == "charge.dispute.created" and evt.data.object.object == "dispute"


# --------------------------------------------------------------------- webhook signatures
def test_sign_payload_is_what_the_sdk_verifies(fake: FakeStripe) -> None:
    session = _payment_session(fake.client(), fake)
    event = fake.complete_checkout(session.id)[0]
    payload = json.dumps(event)
    header = sign_payload(payload, fake.webhook_secret)
    assert header.startswith("t=") and ",v1=" in header

    parsed = stripe.Webhook.construct_event(payload, header, fake.webhook_secret)
    assert parsed.id == event["id"] and parsed.type == "checkout.session.completed"
    assert parsed.data.object.id == session.id

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_someone_else")
    stale = sign_payload(payload, fake.webhook_secret, timestamp=int(time.time()) - 301)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(payload, stale, fake.webhook_secret, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload + " ", header, fake.webhook_secret)


def test_delivery_to_a_receiver(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = _payment_session(client, fake)
    events = fake.complete_checkout(session.id)  # auto_deliver: POSTed before returning
    assert [e.id for e in receiver.events] == [e["id"] for e in events]
    assert all(d["status_code"] == 200 for d in fake.deliveries)
    body, sig = receiver.raw[0]
    assert json.loads(body)["type"] == "checkout.session.completed"
    assert sig.startswith("t=")

    # events caused by API calls are delivered in the background, after the response
    cus = client.v1.customers.create(params={"email": "bg@example.com"})
    fake.wait_for_deliveries()
    assert receiver.events[-1].type == "customer.created"
    assert receiver.events[-1].data.object.id == cus.id

    # explicit delivery, e.g. a replay or a forged signature
    assert fake.deliver(events[0]).status_code == 200
    assert fake.deliver(events[0], signature_secret="whsec_wrong").status_code == 400
    old = int(time.time()) - 3600
    assert fake.deliver(events[0], timestamp=old).status_code == 400

    fake.auto_deliver = False
    before = len(receiver.events)
    fake.refund_charge(next(iter(fake.charges)))
    assert len(receiver.events) == before


def test_hosted_pay_page_completes_and_redirects(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver, browser: httpx.Client
) -> None:
    session = _payment_session(client, fake)
    page = browser.get(session.url)
    assert page.status_code == 200
    assert "$10.00" in page.text and 'id="pay"' in page.text
    assert f'id="cancel" href="{CANCEL}"' in page.text

    resp = browser.post(session.url, data={"outcome": "paid"})
    assert resp.status_code == 303
    assert resp.headers["location"] == SUCCESS.replace("{CHECKOUT_SESSION_ID}", session.id)
    # delivered before the redirect, so the success page can already see the credits
    assert receiver.events[0].type == "checkout.session.completed"
    assert fake.checkout_sessions[session.id]["status"] == "complete"
    assert "no longer active" in browser.get(session.url).text


def test_declined_card_and_portal_cancel_pages(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver, browser: httpx.Client
) -> None:
    session = _payment_session(client, fake)
    page = browser.post(session.url, data={"outcome": "declined"})
    assert page.status_code == 200 and "Your card was declined." in page.text
    assert [e.type for e in receiver.events] == ["charge.failed", "payment_intent.payment_failed"]
    assert fake.checkout_sessions[session.id]["status"] == "open"
    browser.post(session.url, data={"outcome": "paid"})  # retried on the same PaymentIntent
    assert fake.checkout_sessions[session.id]["payment_intent"] == receiver.events[1].data.object.id

    _, sub = _subscription(fake, client)
    portal = client.v1.billing_portal.sessions.create(params={"customer": sub.customer})
    page = browser.get(portal.url)
    assert 'class="cancel-subscription"' in page.text and "visa •••• 4242" in page.text
    resp = browser.post(f"{portal.url}/cancel", data={"subscription": sub.id})
    assert resp.status_code == 303
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is True
    assert receiver.events[-1].type == "customer.subscription.updated"
    assert [e["type"] for e in fake.renew_subscription(sub.id)] == ["customer.subscription.deleted"]
