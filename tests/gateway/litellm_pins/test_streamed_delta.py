"""streamed_delta.py: LiteLLM's stream notes, per chunk, the text streamed so far and
whether a delta carried anything but text (`_accumulate_streamed_delta`), through
`Delta.get`; through the bridge it reads the delta directly, with the same result, and
the patched method is the one LiteLLM's stream calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router, streamed_delta
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import chat_stream_with_usage, router_on


@pytest.fixture(scope="module")
async def router(upstream: FakeUpstream) -> AsyncIterator[Router]:
    with router_on(upstream) as router:
        yield router
        await litellm_bridge.close_upstream_clients(router)


def _deltas() -> list[Any]:
    from litellm.types.utils import Delta

    tool_call = {"id": "c1", "function": {"name": "f", "arguments": "{}"}}
    dropped = Delta(content="kept")
    dropped.__pydantic_extra__.pop("content")  # type: ignore[union-attr]
    return [
        Delta(content="Hello"),
        Delta(content=""),
        Delta(content=None, role="assistant"),
        Delta(content=[{"type": "text", "text": "a list"}]),
        Delta(content="x", reasoning_content="thinking"),
        Delta(content=None, tool_calls=[tool_call]),
        Delta(content="y", annotations=[]),
        Delta(content="z", images=[{"image_url": {"url": "u"}, "index": 0, "type": "image_url"}]),
        Delta(content="w", provider_specific_fields={"k": "v"}),
        Delta(content="t", thinking_blocks=[{"type": "thinking", "thinking": "t"}]),
        dropped,
        {"content": "a dict"},
        None,
    ]


def _noted(accumulate: Any, deltas: list[Any]) -> list[tuple[str, bool]]:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    noted = []
    for delta in deltas:
        stream = CustomStreamWrapper.__new__(CustomStreamWrapper)
        stream.response_uptil_now = "before:"
        stream._emitted_disqualifying_content = False
        accumulate(stream, delta)
        noted.append((stream.response_uptil_now, stream._emitted_disqualifying_content))
    return noted


def test_a_delta_is_noted_as_litellm_notes_it() -> None:
    assert streamed_delta._readable_directly()
    deltas = _deltas()
    assert _noted(streamed_delta._accumulate_directly, deltas) == _noted(
        streamed_delta._accumulate, deltas
    )


async def test_the_patched_method_is_what_the_stream_calls(
    router: Router, fresh_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    streamed_delta.read_deltas_directly()
    assert CustomStreamWrapper._accumulate_streamed_delta is streamed_delta._accumulate_directly
    seen: list[str] = []

    def counted(self: CustomStreamWrapper, delta: Any) -> None:
        streamed_delta._accumulate_directly(self, delta)
        seen.append(self.response_uptil_now)

    monkeypatch.setattr(CustomStreamWrapper, "_accumulate_streamed_delta", counted)
    fresh_upstream.reply_text = "one two three"
    _, chunks = await chat_stream_with_usage(router, "gpt-4.1-nano")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert seen and seen[-1] == text
