"""kept_chunks.py: the Router's stream keeps every chunk it yielded in its `chunks` list,
and that list is all that keeps them: emptied once the stream ended, the chunk objects
are freed then (what `streaming.release_kept_chunks` does a slice at a time), not when
the stream itself is let go."""

from __future__ import annotations

import gc

from litellm.types.utils import ModelResponseStream

from gateway_plugins.litellm_bridge import Router, kept_chunks
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import MESSAGES

WORDS = 40


def live_chunks() -> int:
    return sum(isinstance(o, ModelResponseStream) for o in gc.get_objects())


async def test_an_ended_streams_chunks_are_kept_in_its_list_and_only_there(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    fresh_upstream.reply_text = " ".join(["word"] * WORDS)
    stream = await router.acompletion(
        model="gpt-4.1-nano",
        messages=MESSAGES,
        max_tokens=200,
        stream=True,
        stream_options={"include_usage": True},
    )
    received = 0
    async for _chunk in stream:
        received += 1
    del _chunk
    kept = kept_chunks(stream)
    assert kept is not None and len(kept) >= WORDS
    gc.collect()
    before = live_chunks()
    kept.clear()
    assert before - live_chunks() >= WORDS
    assert received >= WORDS
