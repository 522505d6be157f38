"""SIGTERM settles what it cuts (issue 21, point 3): after the graceful window
(`GATEWAY_GRACEFUL_SECONDS`, 3 s here) every call still running is ended the way a
client leaving ends it — a stream gets its API's error event, a plain call a 503 in its
API's format — and every call the upstream worked on is settled (billed the counted
prompt plus what was delivered, by the model's tokenizer) before the process exits, with
no hold left behind. On main the streams were dropped without an error event, the plain
calls got a 500, and none had a usage row.

The calls are held in flight by the fake upstream (streams stalled after 3 chunks, plain
calls held), so nothing races the machine: the test waits for them to be in flight, and
only the gateway's own 3 s window is a timer.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from portal.db import open_database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import (
    RunningGateway,
    eventually,
    funded_user,
    migrated_sqlite_url,
    start_gateway,
    stop_gateway,
)
from tests.gateway.accounting import debits_by_call
from tests.gateway.support import money

pytestmark = pytest.mark.gateway

FUNDING = 10**9
PROMPT = "Tell me a long story"
STREAMS = {
    "chat": ("/v1/chat/completions", "gpt-4.1-nano"),
    "messages": ("/v1/messages", "claude-haiku-4-5"),
    "responses": ("/v1/responses", "gpt-4.1-nano"),
}
PLAIN = {
    "chat": ("/v1/chat/completions", "gpt-4.1-nano"),
    "messages": ("/v1/messages", "claude-haiku-4-5"),
}


@pytest.fixture
def cut_gateway(fresh_upstream: FakeUpstream, tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(
        database_url=migrated_sqlite_url(tmp_path),
        upstream=fresh_upstream,
        work_dir=tmp_path,
        extra_env={"GATEWAY_GRACEFUL_SECONDS": "3"},
    )
    yield running
    if running.process.poll() is None:
        stop_gateway(running)


def body(api: str, model: str, stream: bool) -> dict[str, Any]:
    if api == "responses":
        return {"model": model, "input": PROMPT, "max_output_tokens": 400, "stream": stream}
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 400,
        "stream": stream,
    }


async def test_sigterm_past_the_window_ends_and_settles_every_call_in_flight(
    cut_gateway: RunningGateway, fresh_upstream: FakeUpstream, tmp_path: Path
) -> None:
    db = open_database(cut_gateway.database_url)
    try:
        user = await funded_user(db, units=FUNDING)
        headers = {"Authorization": f"Bearer {user.token}"}
        fresh_upstream.reply_text = " ".join(f"part{i}" for i in range(20))
        fresh_upstream.stall_stream_after(3, count=len(STREAMS))
        delivered: dict[str, list[bytes]] = {api: [] for api in STREAMS}

        async with httpx.AsyncClient(base_url=cut_gateway.url, timeout=120) as client:

            async def stream(api: str) -> bytes:
                path, model = STREAMS[api]
                async with client.stream(
                    "POST", path, json=body(api, model, True), headers=headers
                ) as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_bytes():
                        delivered[api].append(chunk)
                return b"".join(delivered[api])

            streams = {api: asyncio.create_task(stream(api)) for api in STREAMS}
            await eventually(
                lambda: all(b"part2" in b"".join(delivered[api]) for api in STREAMS),
                seconds=60,
                what="every stream delivered its 3 chunks",
            )
            fresh_upstream.hold_next(count=len(PLAIN))
            plain = {
                api: asyncio.create_task(
                    client.post(path, json=body(api, model, False), headers=headers)
                )
                for api, (path, model) in PLAIN.items()
            }
            await eventually(
                lambda: fresh_upstream.calls_held == len(PLAIN), seconds=60, what="plain held"
            )

            cut_gateway.process.send_signal(signal.SIGTERM)
            ended = {api: await task for api, task in streams.items()}
            answers = {api: await task for api, task in plain.items()}
        exit_code = await asyncio.to_thread(lambda: cut_gateway.process.wait(timeout=120))

        assert exit_code == -signal.SIGTERM, cut_gateway.logs()[-2000:]
        # Streams: the API's own error event, no finish.
        for api, raw in ended.items():
            last = raw.strip().split(b"\n\n")[-1]
            assert b"gateway_shutdown" in last or b"api_error" in last, (api, last)
            assert b"[DONE]" not in raw and b"message_stop" not in raw, api
            assert b"response.completed" not in raw, api
            if api == "messages":
                assert last.startswith(b"event: error"), last
            elif api == "responses":
                assert last.startswith(b"event: error") and b'"gateway_shutdown"' in last
            else:
                assert orjson.loads(last[5:])["error"]["code"] == "gateway_shutdown"
        # Plain calls: 503 in the API's format.
        for api, answer in answers.items():
            assert answer.status_code == 503, (api, answer.text)
            error = answer.json()
            if api == "messages":  # {"type": "error", "error": {"type": "api_error", ...}}
                assert error["type"] == "error" and error["error"]["type"] == "api_error"
            else:
                assert error["error"]["code"] == "gateway_shutdown", error

        records = await eventually(
            lambda: _records(db, user.user_id, len(STREAMS) + len(PLAIN)),
            seconds=30,
            what="every call settled",
        )
        cut = [r for r in records if r.status == CallStatus.INCOMPLETE]
        failed = [r for r in records if r.status == CallStatus.FAILED]
        assert len(cut) == len(STREAMS) and len(failed) == len(PLAIN), records
        for record in cut:
            assert record.error_type == "shutdown"
            assert record.prompt_tokens > 0 and record.completion_tokens >= 3, record
            assert record.credits > 0
        for record in failed:
            assert (record.http_status, record.completion_tokens) == (503, 0)
            assert record.prompt_tokens > 0 and record.credits > 0, record
        assert await debits_by_call(db, user.user_id) == {r.call_id: 1 for r in records}
        state = await money(db, user.user_id)
        assert state.reserved == 0  # every hold released, none left to expire
        assert FUNDING - state.balance == sum(r.credits for r in records)
    finally:
        await db.dispose()


async def _records(db: Any, user_id: str, count: int) -> list[Any] | None:
    from portal.usage.service import list_usage

    async with db.session() as session:
        records = list(await list_usage(session, user_id))
    return records if len(records) >= count else None
