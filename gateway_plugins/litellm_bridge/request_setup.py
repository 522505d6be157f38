"""Patch: each call's request set-up runs in the event loop's thread.

LiteLLM runs each call's synchronous set-up (`completion`, `text_completion`,
`embedding`, `responses`, `anthropic_messages_handler`: parameters mapped, the request
built) in the loop's default executor, a thread: a hop there and back per call and the
GIL passed between two threads. Where every deployment's provider builds its request
without I/O (`INLINE_SETUP_PROVIDERS`: keys from the environment, no token fetched), the
default executor runs those set-ups inline; anything else submitted still gets a thread.
LiteLLM submits `partial(Context.run, partial(<set-up>, ...))`. Figures: bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import litellm
from litellm.llms.anthropic.messages.native.handler import anthropic_messages_handler
from litellm.responses.main import responses as responses_setup

from gateway_plugins.bridge_switches import without
from gateway_plugins.litellm_bridge.router import Router

__all__ = ["INLINE_SETUP_PROVIDERS", "run_request_setup_inline"]

# Providers whose request set-up reads its key from the environment and does no I/O
# (Azure, Vertex AI, Bedrock and the like may fetch a token or credentials there).
INLINE_SETUP_PROVIDERS = frozenset(
    {"openai", "text-completion-openai", "anthropic", "gemini", "openrouter"}
)
_SETUP_FUNCTIONS = frozenset(
    {
        litellm.main.completion,
        litellm.main.text_completion,
        litellm.main.embedding,
        responses_setup,
        anthropic_messages_handler,
    }
)


def _is_request_setup(fn: Any) -> bool:
    inner = fn.args[0] if isinstance(fn, functools.partial) and fn.args else None
    return isinstance(inner, functools.partial) and inner.func in _SETUP_FUNCTIONS


class _InlineRequestSetup(ThreadPoolExecutor):
    """The loop's default executor: LiteLLM's request set-up runs at once, in the loop's
    thread; everything else (DNS lookups, `asyncio.to_thread`) in a worker thread."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not _is_request_setup(fn):
            return super().submit(fn, *args, **kwargs)
        # An asyncio future, done: `run_in_executor` hands it back as is (`wrap_future`),
        # with no thread-safe hand-over (a lock, and a wake-up of the loop) to pay for.
        done = asyncio.get_running_loop().create_future()
        try:
            done.set_result(fn(*args, **kwargs))
        except Exception as exc:
            done.set_exception(exc)
        return done  # type: ignore[return-value]


def _provider_of(deployment: Mapping[str, Any]) -> str | None:
    params = deployment.get("litellm_params") or {}
    try:
        _, provider, _, _ = litellm.get_llm_provider(
            model=str(params.get("model")), custom_llm_provider=params.get("custom_llm_provider")
        )
    except Exception:
        return None
    return str(provider)


def run_request_setup_inline(loop: asyncio.AbstractEventLoop, router: Router) -> bool:
    """Makes LiteLLM's request set-up run in the loop's thread if every deployment's
    provider is in `INLINE_SETUP_PROVIDERS`; says whether it did."""
    if without("run_request_setup_inline"):
        return False
    if not all(_provider_of(d) in INLINE_SETUP_PROVIDERS for d in router.registry().all()):
        return False
    loop.set_default_executor(_InlineRequestSetup())
    return True
