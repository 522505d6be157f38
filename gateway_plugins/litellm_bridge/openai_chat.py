"""Switch: chat on OpenAI deployments through LiteLLM's own HTTP handler, not the SDK.

LiteLLM's switch is the environment variable `EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER`,
read per call (`main._complete_custom_openai`); the gateway's process sets it at start
(`server.CHAT_WITHOUT_OPENAI_SDK`, in `server.prepare_environment`, before LiteLLM is
imported). OpenRouter, Anthropic and Gemini already take that handler. The SDK path
builds the request and parses the answer twice over (httpx request, SDK model, LiteLLM's
own). Seen against the fake upstream: an upstream 422 reaches the caller as 422 (the SDK
path retried without the parameters the error named, then returned None: 502). On
1.110.2 the Router retries an upstream 500 on the same deployment twice before the
fallback group (4 upstream requests in all). Figures: bench/RESULTS.md.
"""

from __future__ import annotations

from gateway_plugins.server import CHAT_WITHOUT_OPENAI_SDK

__all__ = ["CHAT_WITHOUT_OPENAI_SDK"]
