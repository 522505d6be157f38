"""One usage record and one debit per call, whatever LiteLLM delivers: duplicated success
callbacks, concurrent duplicates, a failure followed by a success for the same call id.

The callbacks are driven in-process with kwargs captured from a real LiteLLM router call
(fake upstream, our payload scrubber first, as in the gateway), so their shape is LiteLLM's
own; the last test goes through the real proxy's fallback path."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import UserAPIKeyAuth

from gateway_plugins import metering
from gateway_plugins.metering import credit_meter
from gateway_plugins.payload_scrubbing import content_scrubber
from gateway_plugins.runtime import GatewayRuntime
from portal.credits import ledger
from portal.credits.models import EntryKind
from portal.credits.units import credits_to_units
from portal.db import Database
from portal.settings import Settings
from portal.usage.models import CallStatus
from portal.usage.service import list_usage
from portal.usage.spool import Spool
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import FundedUser, MakeUser, RunningGateway
from tests.gateway.support import expected_units, gateway_config, money, settled_usage

# LiteLLM's router builds pydantic schemas on first use that warn about ReadOnly TypedDict
# items (a LiteLLM typing detail, harmless here).
pytestmark = pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning")

MODEL = "gpt-4.1-nano"
MESSAGES = [{"role": "user", "content": "Count to three"}]
MAX_TOKENS = 20


@dataclass
class SuccessEvent:
    """The arguments LiteLLM passed to `async_log_success_event` for one call."""

    kwargs: dict[str, Any]
    response: Any
    start_time: datetime
    end_time: datetime

    @property
    def call_id(self) -> str:
        return self.kwargs["litellm_call_id"]

    async def deliver(self) -> None:
        await credit_meter.async_log_success_event(
            self.kwargs, self.response, self.start_time, self.end_time
        )


class _Capture(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.events: asyncio.Queue[SuccessEvent] = asyncio.Queue()

    async def async_log_success_event(
        self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.events.put_nowait(SuccessEvent(kwargs, response_obj, start_time, end_time))


_CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)

CaptureCall = Callable[[FundedUser], Awaitable[SuccessEvent]]


@pytest.fixture
async def meter_in_process(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> GatewayRuntime:
    """`credit_meter` in this process, writing to the test database."""
    runtime = GatewayRuntime(
        settings=Settings.from_env({"WFG_VAR_DIR": str(tmp_path)}),
        config=gateway_config(),
        database=db,
        spool=Spool(tmp_path / "spool"),
    )
    monkeypatch.setattr(metering, "get_runtime", lambda: runtime)
    return runtime


@pytest.fixture
async def capture_call(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CaptureCall]:
    """Makes a real call through LiteLLM's router (as the gateway user) and returns the
    success-callback arguments LiteLLM produced for it, after our scrubber ran."""
    upstream.reset()
    for name, value in upstream.env().items():
        monkeypatch.setenv(name, value)
    capture = _Capture()
    # LiteLLM copies `callbacks` into module-level lists (one instance per class):
    # give this test fresh ones, restored afterwards.
    for name in _CALLBACK_LISTS:
        monkeypatch.setattr(litellm, name, [])
    litellm.callbacks.extend([content_scrubber, capture])
    monkeypatch.setattr(litellm, "turn_off_message_logging", True)
    router = litellm.Router(model_list=gateway_config().raw["model_list"])

    async def call(user: FundedUser) -> SuccessEvent:
        await router.acompletion(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=MAX_TOKENS,
            metadata={
                "user_api_key_user_id": user.user_id,
                "user_api_key_metadata": {"wfg_token_id": user.token_id},
            },
        )
        return await asyncio.wait_for(capture.events.get(), 30)

    yield call
    upstream.reset()
    assert os.environ.get("OPENAI_API_BASE") == upstream.env()["OPENAI_API_BASE"]


async def reserve(user: FundedUser, call_id: str) -> None:
    """What the proxy's pre-call hook does before the call reaches the upstream."""
    await credit_meter.async_pre_call_hook(
        UserAPIKeyAuth(user_id=user.user_id, metadata={"wfg_token_id": user.token_id}),
        None,
        {
            "model": MODEL,
            "messages": MESSAGES,
            "max_tokens": MAX_TOKENS,
            "litellm_call_id": call_id,
        },
        "completion",
    )


async def debits(db: Database, user_id: str) -> list[tuple[str, int]]:
    async with db.session() as session:
        entries = await ledger.list_entries(session, user_id, limit=1000)
    return sorted((e.cause_id, e.amount) for e in entries if e.kind == EntryKind.DEBIT)


async def test_duplicated_success_callback_writes_nothing_new(
    db: Database, make_user: MakeUser, meter_in_process: GatewayRuntime, capture_call: CaptureCall
) -> None:
    user = await make_user("1")
    funded = credits_to_units("1")
    sequential, concurrent = await capture_call(user), await capture_call(user)
    assert sequential.call_id != concurrent.call_id
    for event in (sequential, concurrent):
        await reserve(user, event.call_id)
    assert (await money(db, user.user_id)).reserved > 0

    await sequential.deliver()
    await sequential.deliver()
    await asyncio.gather(*(concurrent.deliver() for _ in range(3)))
    await sequential.deliver()

    async with db.session() as session:
        records = await list_usage(session, user.user_id)
    assert sorted(r.call_id for r in records) == sorted([sequential.call_id, concurrent.call_id])
    assert all(r.status == CallStatus.SUCCESS and r.credits > 0 for r in records)
    assert await debits(db, user.user_id) == sorted((r.call_id, -r.credits) for r in records)
    state = await money(db, user.user_id)
    assert state.balance == funded - sum(r.credits for r in records) == state.ledger_sum
    assert state.reserved == 0
    assert not meter_in_process.spool.pending()


async def test_failed_then_succeeded_call_ends_with_one_success_and_one_debit(
    db: Database, make_user: MakeUser, meter_in_process: GatewayRuntime, capture_call: CaptureCall
) -> None:
    user = await make_user("1")
    event = await capture_call(user)
    identity = UserAPIKeyAuth(user_id=user.user_id, metadata={"wfg_token_id": user.token_id})
    failure = litellm.RateLimitError(message="slow down", llm_provider="openai", model=MODEL)

    await reserve(user, event.call_id)
    await credit_meter.async_post_call_failure_hook(
        {"litellm_call_id": event.call_id, "model": MODEL}, failure, identity
    )
    async with db.session() as session:
        (failed,) = await list_usage(session, user.user_id)
    assert (failed.status, failed.credits, failed.http_status) == (CallStatus.FAILED, 0, 429)
    assert await debits(db, user.user_id) == []

    await event.deliver()
    await event.deliver()
    await credit_meter.async_post_call_failure_hook(
        {"litellm_call_id": event.call_id, "model": MODEL}, failure, identity
    )

    async with db.session() as session:
        (record,) = await list_usage(session, user.user_id)
    assert record.call_id == event.call_id
    assert record.status == CallStatus.SUCCESS
    assert record.credits > 0
    assert await debits(db, user.user_id) == [(event.call_id, -record.credits)]
    state = await money(db, user.user_id)
    assert state.balance == credits_to_units("1") - record.credits == state.ledger_sum
    assert state.reserved == 0


@pytest.mark.gateway
async def test_fallback_after_a_failed_attempt_is_debited_once(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    fresh_upstream.fail_next(400)  # gpt-4o-mini's deployment refuses; config falls back
    answer = gateway.client(user.token).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS
    )
    assert answer.choices[0].message.content == fresh_upstream.reply_text
    assert [r["provider"] for r in fresh_upstream.requests] == ["openai", "anthropic"]

    (record,) = await settled_usage(db, user.user_id, 1)
    assert record.status == CallStatus.SUCCESS
    assert record.model == "claude-haiku-4-5"  # charged for the model that answered
    price = expected_units(record.model, record.prompt_tokens, record.completion_tokens)
    assert abs(record.credits - price) <= max(1, price // 100)
    assert await debits(db, user.user_id) == [(record.call_id, -record.credits)]
    state = await money(db, user.user_id)
    assert state.balance == credits_to_units("1") - record.credits == state.ledger_sum
