"""Reliance: a stream keeps every chunk it yielded in its `chunks` list until it is freed.

LiteLLM's stream (`CustomStreamWrapper`, and the Router's wrapper around it, which shares
the inner stream's list) appends each chunk object to `chunks` for its end-of-stream
rebuild and its failure logging: ~20 Python objects a chunk, ~100k for a 5,000-chunk
answer. Freed at once when the request lets go of the stream, they hold the event loop
for 15-20 ms of CPU (reference counting, not the garbage collector). Once the stream has
ended, been closed and been settled, nothing reads the list again, so the gateway empties
it a slice at a time (`streaming.MeteredStream`, `fairness`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["kept_chunks"]


def kept_chunks(stream: Any) -> list[Any] | None:
    """The list of chunk objects `stream` kept (None: it keeps none, or not as a list)."""
    chunks = getattr(stream, "chunks", None)
    return chunks if isinstance(chunks, list) else None
