"""A fake LLM upstream that speaks the real wire formats of four providers.

``FakeUpstream`` is a loopback HTTP server (starlette + uvicorn, running in a
background thread with its own event loop) that answers like OpenAI, Anthropic,
Google AI Studio (Gemini) and OpenRouter do, closely enough that LiteLLM (and the
official ``openai`` SDK) as a client cannot tell the difference. Use it from sync
tests, async tests (it never touches the caller's loop) or hand ``env()`` to a
separate LiteLLM proxy process::

    with FakeUpstream() as upstream:
        os.environ.update(upstream.env())
        ...
        assert upstream.requests[-1]["provider"] == "anthropic"

Routes (base URLs as returned by ``env()``)::

    OPENAI_API_BASE     = {url}/v1      POST /v1/chat/completions, /v1/completions,
                                             /v1/embeddings, /v1/responses
                                        GET  /v1/models
    ANTHROPIC_API_BASE  = {url}         POST /v1/messages (LiteLLM appends /v1/messages)
    GEMINI_API_BASE     = {url}/v1beta  POST /v1beta/models/{model}:generateContent
                                        POST /v1beta/models/{model}:streamGenerateContent?alt=sse
                                        GET  /v1beta/models
    OPENROUTER_API_BASE = {url}/api/v1  POST /api/v1/chat/completions, /api/v1/completions,
                                             /api/v1/embeddings, /api/v1/responses
                                        GET  /api/v1/models

Token accounting is deterministic, identical for every provider and endpoint:

* prompt tokens = whitespace-separated words in all message text (system prompt /
  ``instructions`` included) + 3 per message or input item (the system prompt counts
  as one message; for Anthropic and Gemini each text block / part counts as one
  message, which undoes LiteLLM's merging of messages, see ``tokens.segments``);
  embeddings count words only, with no per-item overhead;
* completion tokens = words in ``reply_text`` (per choice: legacy completions answer
  each prompt of a list) + ``usage_extra["reasoning_tokens"]``.

The reply is cut at the request's output cap (``max_tokens``, ``max_completion_tokens``,
``max_output_tokens``, Gemini's ``maxOutputTokens``; one word per token) and its usage
says so, as a provider stops there. ``usage_extra["image_tokens"]`` adds that many
prompt tokens per image part (URL or inline), as providers bill images.

A chat completions prompt containing ``[reply with N words]`` is answered with N words
instead of ``reply_text`` (streamed: N content chunks), so one fake serves short calls
and long streams at once (``tokens.LONG_REPLY``).

``usage_extra = {"cached_tokens": N, "reasoning_tokens": M}`` is reported the way
each provider reports it: N of the prompt tokens were read from cache (OpenAI
``prompt_tokens_details.cached_tokens`` / Responses
``input_tokens_details.cached_tokens``, Anthropic ``cache_read_input_tokens`` with
``input_tokens`` = prompt - N, Gemini ``cachedContentTokenCount``) and M extra output
tokens were spent thinking (OpenAI ``completion_tokens_details.reasoning_tokens``,
included in ``completion_tokens``; Responses
``output_tokens_details.reasoning_tokens``, included in ``output_tokens``; Anthropic:
included in ``output_tokens``; Gemini ``thoughtsTokenCount``, separate from
``candidatesTokenCount``). So LiteLLM should always see prompt = the word count
formula and completion = reply words + M. On Anthropic, ``usage_extra``
``cache_write_5m_tokens`` / ``cache_write_1h_tokens`` report prompt tokens written to
the prompt cache (``cache_creation_input_tokens`` and its ``cache_creation`` split by
lifetime, out of ``input_tokens``).

Faults (``faults`` module): ``fail_next`` (provider error JSON), ``hang_next`` (no
response headers), ``cut_stream_after`` (connection dropped mid-stream) and
``stall_stream_after`` (stream goes silent), for any provider and endpoint.

Response ids are constant across calls, as real providers' ids may repeat: code
under test must key on LiteLLM's own call id, never on these.

Modules: ``server`` (FakeUpstream, lifecycle, routes), ``core`` (shared state and
helpers), ``faults``, ``tokens`` (counting, usage shapes), ``wire`` (SSE, errors,
ids), one module per provider/resource: ``openai_chat``, ``openai_completions``,
``openai_embeddings``, ``openai_responses``, ``anthropic``, ``gemini``.
"""

from __future__ import annotations

from .openai_embeddings import EMBEDDING_DIMENSIONS, embedding_vector
from .server import FakeUpstream
from .wire import DEFAULT_API_KEY, DEFAULT_REPLY_TEXT

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_REPLY_TEXT",
    "EMBEDDING_DIMENSIONS",
    "FakeUpstream",
    "embedding_vector",
]
