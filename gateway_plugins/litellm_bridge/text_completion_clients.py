"""Patch (a defect): one SDK client per static key for text completions.

A `text-completion-openai/…` deployment gets no client from the Router, and LiteLLM's
handler builds a new OpenAI SDK client for every call (`llms/openai/completion/handler.py`,
`build_async_openai_client`): a new connection (a TLS handshake in production) per call,
its aiohttp session closed only by the garbage collector. With a static API key the
bridge keeps one client per key, base, timeout, retries and organisation, built by the
same function with LiteLLM's cookie-less http client; `clients` closes them at shutdown.
"""

from __future__ import annotations

import hashlib
from typing import Any

from litellm.llms.openai.common_utils import BaseOpenAILLM
from litellm.llms.openai.completion import handler as text_completion_handler

__all__ = ["keep_text_completion_clients"]

_build_text_completion_client = text_completion_handler.build_async_openai_client  # type: ignore[attr-defined]
_KEPT_AT_MOST = 64
_text_completion_clients: dict[tuple[Any, ...], Any] = {}


def _kept_text_completion_client(**options: Any) -> Any:
    """LiteLLM's `build_async_openai_client`, kept per static key and settings. Without a
    key LiteLLM's own path, which keeps workload-identity clients itself."""
    api_key = options.get("api_key")
    if not (isinstance(api_key, str) and api_key.strip()):
        return _build_text_completion_client(**options)
    key = (
        hashlib.sha256(api_key.encode()).hexdigest(),
        *(
            repr(options.get(name))
            for name in ("api_base", "timeout", "max_retries", "organization")
        ),
    )
    client = _text_completion_clients.get(key)
    if client is None:
        client = _build_text_completion_client(
            **{**options, "static_key_http_client_factory": BaseOpenAILLM.get_async_http_client}
        )
        if len(_text_completion_clients) < _KEPT_AT_MOST:
            _text_completion_clients[key] = client
    return client


def keep_text_completion_clients() -> None:
    text_completion_handler.build_async_openai_client = _kept_text_completion_client  # type: ignore[attr-defined,assignment]


def forget_text_completion_clients() -> list[Any]:
    """The kept clients, forgotten (for the caller to close)."""
    clients = list(_text_completion_clients.values())
    _text_completion_clients.clear()
    return clients
