"""Mail through a real SMTP conversation (aiosmtpd on loopback), and SMTP_URL parsing."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy

import httpx
import pytest
from aiosmtpd.controller import Controller

from portal.db import Database
from portal.email.transport import parse_smtp_url
from portal.settings import Settings
from portal.web.app import create_app
from tests.fixtures.gateway import free_port
from tests.portal.support import PASSWORD, Browser


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


async def test_sign_up_mail_goes_through_smtp_when_configured(
    db: Database, portal_settings: Settings, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    settings = portal_settings.model_copy(
        update={"smtp_url": f"smtp://127.0.0.1:{port}", "mail_from": "WFG <n@x.io>"}
    )
    app = create_app(settings, database=db, background_jobs=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost:8080"
    ) as client:
        response = await Browser(client).sign_up("smtp@example.com", password=PASSWORD)
    assert response.status_code == 200
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message["To"] == "smtp@example.com" and message["From"] == "WFG <n@x.io>"
    assert message["X-WFG-Kind"] == "verify_email"
    assert "http://localhost:8080/verify?token=" in message.get_content()
    assert PASSWORD not in message.as_string()
    assert not settings.outbox_dir.exists()


async def test_an_unreachable_smtp_server_does_not_break_sign_up(
    db: Database, portal_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = portal_settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{free_port()}"})
    app = create_app(settings, database=db, background_jobs=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost:8080"
    ) as client:
        response = await Browser(client).sign_up("down@example.com")
    assert response.status_code == 200
    assert "email (verify_email) not delivered" in caplog.text
    assert "down@example.com" not in caplog.text


def test_smtp_url_forms() -> None:
    plain = parse_smtp_url("smtp://mail.example.com")
    assert (plain.host, plain.port, plain.starttls, plain.implicit_tls) == (
        "mail.example.com", 25, False, False,
    )  # fmt: skip
    starttls = parse_smtp_url("smtp://u%40x:p%3Aw@mail.example.com?starttls=true")
    assert (starttls.port, starttls.username, starttls.password) == (587, "u@x", "p:w")
    tls = parse_smtp_url("smtps://u:p@mail.example.com")
    assert tls.implicit_tls and tls.port == 465
    with pytest.raises(ValueError, match="SMTP_URL"):
        parse_smtp_url("http://mail.example.com")
