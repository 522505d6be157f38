"""LiteLLM's upstream clients, closed at shutdown.

Upstream HTTP clients (aiohttp sessions) live in LiteLLM's module-level client cache and
in each Router's cache (one SDK client per OpenAI-style deployment); nothing closes them
on its own. Left open, their sessions warn when the garbage collector finds them.
"""

from __future__ import annotations

import inspect

import litellm
from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

from gateway_plugins.litellm_bridge.router import Router
from gateway_plugins.litellm_bridge.text_completion_clients import forget_text_completion_clients

__all__ = ["close_upstream_clients"]


async def close_upstream_clients(router: Router | None) -> None:
    """Closes the upstream clients LiteLLM and the bridge keep and forgets them, so a later
    call opens new ones. `litellm.module_level_aclient` stays referenced by LiteLLM
    (created on first use); closed, it opens a new session when used again."""
    await close_litellm_async_clients()  # type: ignore[no-untyped-call]
    litellm.in_memory_llm_clients_cache.flush_cache()  # type: ignore[no-untyped-call]
    clients = list(router.health().store.in_memory_cache.cache_dict.values()) if router else []
    clients.append(vars(litellm).get("module_level_aclient"))
    clients.extend(forget_text_completion_clients())
    for client in clients:
        close = getattr(client, "close", None)
        if callable(close) and inspect.iscoroutinefunction(close):
            await close()
    if router is not None:
        router.health().store.in_memory_cache.flush_cache()  # type: ignore[no-untyped-call]
