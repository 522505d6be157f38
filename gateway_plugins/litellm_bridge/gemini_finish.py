"""Patch (a defect): a Gemini stream chunk carries a finish reason only when Gemini sent one.

Gemini ends a stream with a candidate whose `finishReason` is set. LiteLLM's Gemini stream
parser gives every chunk's choice a finish reason all the same (`"stop"` where Gemini sent
none: `VertexGeminiConfig._create_streaming_choice` through `_check_finish_reason`), so
LiteLLM's stream wrapper always believes the upstream said it finished, and a stream the
upstream's connection ended early (a clean end of a close-delimited body after two chunks)
reached the client as `finish_reason: "stop"` + `[DONE]`. With the choice's finish reason
left empty where the candidate has none, the wrapper's own rule for OpenAI-style streams
applies (`CustomStreamWrapper._should_fail_on_clean_eof`: an end of body before any finish
reason raises "Stream ended before a finish_reason was received"), and the gateway answers
the API's error event (`streaming`). Nothing in a chunk LiteLLM yields says whether
Gemini's own finish arrived, so no rule in the gateway's relay can tell the two apart.
Tool calls keep their "tool_calls" finish: LiteLLM's parser sets it on the candidate that
finishes (`ModelResponseIterator._apply_stream_candidates`).
"""

from __future__ import annotations

from typing import Any

from litellm.llms.vertex_ai.gemini.vertex_and_google_ai_studio_gemini import VertexGeminiConfig

__all__ = ["finish_gemini_streams_as_sent"]

_streaming_choice = VertexGeminiConfig._create_streaming_choice


def _streaming_choice_as_sent(
    chat_completion_message: Any, candidate: Any, *args: Any, **kwargs: Any
) -> Any:
    choice = _streaming_choice(chat_completion_message, candidate, *args, **kwargs)
    if candidate.get("finishReason") is None:
        choice.finish_reason = None
    return choice


def finish_gemini_streams_as_sent() -> None:
    VertexGeminiConfig._create_streaming_choice = staticmethod(_streaming_choice_as_sent)  # type: ignore[method-assign]
