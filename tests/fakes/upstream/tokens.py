"""Deterministic token counting and each provider's usage shape.

* prompt tokens = whitespace-separated words in all message text (system prompt /
  ``instructions`` included) + ``PER_MESSAGE_TOKENS`` per message or input item;
  embeddings count words only (no per-item overhead, like the real endpoint);
* completion tokens = words in ``reply_text`` (per choice) + ``usage_extra["reasoning_tokens"]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PER_MESSAGE_TOKENS = 3


def words(text: str) -> int:
    return len(text.split())


def text_of(content: Any) -> str:
    """All text in an OpenAI/Anthropic content value or a Gemini ``parts`` list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(text_of(item) for item in content)
    if isinstance(content, dict):
        texts = []
        if isinstance(content.get("text"), str):
            texts.append(content["text"])
        # Anthropic tool_result blocks nest their content; Gemini Content nests parts.
        for key in ("content", "parts"):
            if key in content:
                texts.append(text_of(content[key]))
        return " ".join(texts)
    return ""


def count(texts: list[str]) -> int:
    return sum(words(t) for t in texts) + PER_MESSAGE_TOKENS * len(texts)


def segments(content: Any) -> list[str]:
    """One text per message-equivalent in an Anthropic or Gemini content value.

    LiteLLM folds OpenAI messages together on the way to these providers (it merges
    consecutive same-role messages into one message of several blocks, and for
    Gemini models without system-message support it prepends the system prompt to
    the first user turn as an extra part). Counting each text block / part as one
    message keeps the token count equal to the OpenAI-side count of the caller's
    plain-string messages, whatever provider the call was routed to.
    """
    if isinstance(content, dict) and "parts" in content:
        content = content["parts"]
    if isinstance(content, list):
        texts = [text_of(block) for block in content if _is_text_block(block)]
        return texts or [""]
    return [text_of(content)]


def _is_text_block(block: Any) -> bool:
    if isinstance(block, str):
        return True
    if not isinstance(block, dict):
        return False
    return isinstance(block.get("text"), str) or block.get("type") == "tool_result"


def openai_message_texts(body: dict[str, Any]) -> list[str]:
    return [text_of(m.get("content")) for m in body.get("messages") or []]


def anthropic_message_texts(body: dict[str, Any]) -> list[str]:
    texts = segments(body["system"]) if body.get("system") else []
    for message in body.get("messages") or []:
        texts += segments(message.get("content"))
    return texts


def gemini_message_texts(body: dict[str, Any]) -> list[str]:
    system = body.get("systemInstruction") or body.get("system_instruction")
    texts = segments(system) if system else []
    for content in body.get("contents") or []:
        texts += segments(content)
    return texts


def last_user_text(items: list[Any], *, key: str = "content") -> str:
    """Text of the last ``role: user`` item (Gemini contents default to the user role)."""
    users = [i for i in items if isinstance(i, dict) and i.get("role", "user") == "user"]
    return text_of(users[-1].get(key)) if users else ""


def prompt_items(value: Any) -> list[str | list[int]]:
    """``prompt`` / ``input`` of /completions and /embeddings as a list of items.

    An item is a string or a token array (a list of ints, counted one token per int).
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str | list) else str(v) for v in value]
    return []


def item_tokens(item: str | list[int]) -> int:
    return words(item) if isinstance(item, str) else len(item)


def item_text(item: str | list[int]) -> str:
    return item if isinstance(item, str) else " ".join(map(str, item))


_IMAGE_TYPES = frozenset({"image_url", "image", "input_image"})
_IMAGE_KEYS = frozenset({"inline_data", "inlineData", "file_data", "fileData"})  # Gemini parts
_CAP_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens", "maxOutputTokens")


def image_parts(value: Any) -> int:
    """Image parts anywhere in a request body (OpenAI, Anthropic, Responses, Gemini)."""
    if isinstance(value, list):
        return sum(image_parts(item) for item in value)
    if isinstance(value, dict):
        own = value.get("type") in _IMAGE_TYPES or bool(_IMAGE_KEYS & value.keys())
        return int(own) + sum(image_parts(item) for item in value.values())
    return 0


def output_cap(body: dict[str, Any]) -> int | None:
    """The request's output cap: ``max_tokens`` & co., or Gemini's ``maxOutputTokens``."""
    config = body.get("generationConfig") or body.get("generation_config") or {}
    for source in (body, config):
        for field in _CAP_FIELDS:
            value = source.get(field) if isinstance(source, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


LONG_REPLY = re.compile(r"\[reply with (\d{1,6}) words\]")
"""A prompt containing ``[reply with N words]`` gets an N-word reply (chat completions),
streamed as N content chunks: the fake serves short calls and long streams at once."""


def long_reply(count: int) -> str:
    """``count`` words (``word0 word1 …``: a few tokens each, like real prose)."""
    return " ".join(f"word{i}" for i in range(count))


def split_reply(text: str) -> list[str]:
    """Roughly one word per chunk; the chunks concatenate back to ``text`` exactly."""
    pieces = re.findall(r"\S+\s*", text)
    if not pieces:
        return [text]
    lead = text[: len(text) - len(text.lstrip())]
    pieces[0] = lead + pieces[0]
    return pieces


@dataclass(frozen=True)
class Usage:
    prompt: int
    completion: int  # visible reply tokens (all choices)
    cached: int
    reasoning: int
    cache_write_5m: int = 0  # prompt tokens written to a 5-minute / 1-hour cache
    cache_write_1h: int = 0

    @property
    def output(self) -> int:
        return self.completion + self.reasoning

    def openai(self, *, openrouter: bool = False) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.output,
            "total_tokens": self.prompt + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        if openrouter:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning}
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached}
            usage["cost"] = 0
            usage["is_byok"] = False
        return usage

    def responses(self) -> dict[str, Any]:
        """The Responses API ``usage`` object (reasoning included in output_tokens)."""
        return {
            "input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cached, "cache_write_tokens": 0},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.prompt + self.output,
        }

    def anthropic(self, *, output_tokens: int | None = None) -> dict[str, Any]:
        written = self.cache_write_5m + self.cache_write_1h
        usage: dict[str, Any] = {
            "input_tokens": self.prompt - self.cached - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": self.cached,
            "output_tokens": self.output if output_tokens is None else output_tokens,
            "service_tier": "standard",
        }
        if written:  # Anthropic's split by lifetime (priced 1.25x and 2x the input)
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": self.cache_write_5m,
                "ephemeral_1h_input_tokens": self.cache_write_1h,
            }
        return usage

    def gemini(self, *, final: bool = True) -> dict[str, Any]:
        meta: dict[str, Any] = {"promptTokenCount": self.prompt}
        if final:
            meta["candidatesTokenCount"] = self.completion
        meta["totalTokenCount"] = self.prompt + (self.output if final else 0)
        if self.cached:
            meta["cachedContentTokenCount"] = self.cached
        if final and self.reasoning:
            meta["thoughtsTokenCount"] = self.reasoning
        meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.prompt}]
        if self.cached:
            meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.cached}]
        return meta
