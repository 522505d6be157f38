"""The bench's load generator counts a failed call with its reason, so a run with
failures says what they were (HTTP status, an incomplete stream, a transport error)."""

from __future__ import annotations

from bench.loadgen import run_load
from tests.fakes.upstream import FakeUpstream

BODY = {"model": "gpt-4.1-nano", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def test_failures_are_counted_by_reason(fresh_upstream: FakeUpstream) -> None:
    url = f"{fresh_upstream.url}/v1/chat/completions"
    fresh_upstream.fail_next(429, count=3)
    plain = await run_load(
        url, BODY, [fresh_upstream.api_key], requests=10, connections=1, max_seconds=60
    )
    assert (plain.answered, plain.failed) == (7, 3)
    assert plain.failures == {"HTTP 429": 3}
    assert plain.failure_summary() == "HTTP 429 x3"

    fresh_upstream.cut_stream_after(2)
    streamed = await run_load(
        url,
        {**BODY, "stream": True},
        [fresh_upstream.api_key],
        requests=1,
        connections=1,
        max_seconds=60,
    )
    assert streamed.failed == 1
    assert list(streamed.failures) in (["HTTP 200, incomplete"], ["RemoteProtocolError"])
