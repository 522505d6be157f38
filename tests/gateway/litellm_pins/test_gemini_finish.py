"""gemini_finish.py: LiteLLM's Gemini stream parser gives every chunk a finish reason
(`"stop"` where Gemini sent none), so a Gemini stream whose body ended early finished as
`stop` (the defect); through the bridge only the candidate Gemini finished carries one,
and LiteLLM's stream wrapper raises on an end of body before it. End to end, every
endpoint: tests/gateway/test_stream_end_marker_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_plugins.litellm_bridge import Router, gemini_finish
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import MESSAGES

REPLY = "once upon a time there was a gateway"


async def _gemini_stream(router: Router) -> tuple[list[Any], BaseException | None]:
    stream = await router.acompletion(
        model="gemini-2.5-flash", messages=MESSAGES, max_tokens=50, stream=True
    )
    chunks: list[Any] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except Exception as error:
        return chunks, error
    return chunks, None


def _finishes(chunks: list[Any]) -> list[str | None]:
    return [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]


async def test_a_gemini_stream_finishes_only_when_gemini_said_so(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    gemini_finish.finish_gemini_streams_as_sent()
    fresh_upstream.reply_text = REPLY
    chunks, error = await _gemini_stream(router)
    assert error is None
    assert _finishes(chunks)[-1] == "stop"  # Gemini's own finishReason, as ever
    assert set(_finishes(chunks)[:-1]) == {None}

    fresh_upstream.end_stream_after(2)
    chunks, error = await _gemini_stream(router)
    assert error is not None and "before a finish_reason" in str(error)
    assert _finishes(chunks) == [None, None]


async def test_litellm_alone_still_makes_up_the_finish(
    router: Router, fresh_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patched method is still the one LiteLLM's parser calls, and still needed."""
    from litellm.llms.vertex_ai.gemini.vertex_and_google_ai_studio_gemini import (
        VertexGeminiConfig,
    )

    monkeypatch.setattr(
        VertexGeminiConfig,
        "_create_streaming_choice",
        staticmethod(gemini_finish._streaming_choice),
    )
    fresh_upstream.reply_text = REPLY
    fresh_upstream.end_stream_after(2)
    chunks, error = await _gemini_stream(router)
    assert error is None
    assert _finishes(chunks)[-1] == "stop"  # made up: Gemini never finished
