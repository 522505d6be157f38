"""How much output each stream has sent to its client: a character count, never text.

When a client abandons a stream, LiteLLM bills the chunks received so far, but trusts any
usage numbers the upstream put in them. Gemini reports output tokens only in its last
chunk, so a Gemini stream cut early arrived with 0 output tokens and was billed for its
prompt alone. The meter charges a cut stream for at least what the tally saw sent.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHARS_PER_TOKEN", "Sent", "StreamTally", "stream_tally"]

# A deliberately plain estimate (English text runs ~4 characters per token); counting
# with a tokenizer per chunk would cost more on every stream than it could recover.
CHARS_PER_TOKEN = 4
_MAX_TRACKED = 10_000  # streams whose settlement never came are forgotten, oldest first


class Sent:
    """Characters of output one stream has sent so far."""

    __slots__ = ("chars",)

    def __init__(self) -> None:
        self.chars = 0

    def add(self, chunk: Any) -> None:
        self.chars += _output_chars(chunk)


class StreamTally:
    def __init__(self) -> None:
        self._sent: dict[str, Sent] = {}

    def open(self, call_id: str) -> Sent:
        """Start counting a stream. The caller keeps the `Sent`, so a chunk counted after
        the call was settled never re-creates an entry."""
        sent = self._sent[call_id] = Sent()
        while len(self._sent) > _MAX_TRACKED:
            self._sent.pop(next(iter(self._sent)))
        return sent

    def take_tokens(self, call_id: str) -> int:
        """Estimated output tokens sent for `call_id` (0 if not a counted stream); forgets it."""
        sent = self._sent.pop(call_id, None)
        return -(-sent.chars // CHARS_PER_TOKEN) if sent is not None else 0


def _output_chars(chunk: Any) -> int:
    total = 0
    for choice in getattr(chunk, "choices", None) or ():
        delta = getattr(choice, "delta", None)
        if delta is None:
            continue
        for field in ("content", "reasoning_content"):
            text = getattr(delta, field, None)
            if isinstance(text, str):
                total += len(text)
        for tool_call in getattr(delta, "tool_calls", None) or ():
            arguments = getattr(getattr(tool_call, "function", None), "arguments", None)
            if isinstance(arguments, str):
                total += len(arguments)
    return total


stream_tally = StreamTally()
