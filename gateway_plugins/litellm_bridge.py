"""Every LiteLLM detail the gateway relies on, named in one place.

LiteLLM is used as a library: one `litellm.Router`, built from config.yaml's `model_list`,
`router_settings` and `litellm_settings` (LiteLLM's own conventions), does provider
routing, fallbacks, retries, streaming and format translation; its cost map prices calls.
Nothing else in `gateway_plugins` imports LiteLLM. `tests/gateway/test_litellm_pins.py`
pins each behaviour listed here, so an upgrade that changes one fails loudly:

- `Router.acompletion / atext_completion / aembedding / aanthropic_messages / aresponses`
  are the calls (`ROUTER_METHODS`); a stream is an async iterator of chunk objects (chat,
  text, responses events) or of raw SSE bytes (Anthropic messages);
- a response (plain, or the stream object) carries `_hidden_params["model_id"]`, the
  deployment that answered;
- `cost_per_token(model=, custom_llm_provider=, usage_object=)` prices a call's reported
  usage (cached input, cache writes and reasoning tokens as LiteLLM prices them);
- `stream_options={"include_usage": True}` makes a chat/text stream end with usage;
- chat on OpenAI deployments goes through LiteLLM's own HTTP handler
  (`base_llm_http_handler`, as OpenRouter, Anthropic and Gemini already do), not through
  the OpenAI SDK: LiteLLM's switch is the environment variable
  `EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER`, read per call (`main._complete_custom_openai`),
  which the gateway's process sets at start (`server.CHAT_WITHOUT_OPENAI_SDK`, with the
  other variables LiteLLM reads, in `server.prepare_environment`). The SDK path builds
  the request and parses the answer twice over (httpx request, SDK model, LiteLLM's own):
  ~20% of the Router's CPU per call. Differences seen against the fake upstream: an
  upstream 422 reaches the caller as 422 (on the SDK path LiteLLM retried without the
  parameters the error named, `drop_params`, then returned None, answered as 502); an
  upstream 401/403/413 whose message LiteLLM does not recognise is a `BadRequestError`
  that keeps its status (the gateway maps statuses, not classes); after one upstream 500
  the Router tried the fallback group rather than the same deployment again, and after
  a 401 the other way round;
- a call can still return None instead of raising (the SDK path above, kept by text
  completions and embeddings); the gateway answers that as a failed call (502);
- exceptions carry `status_code`; `Router(allowed_fails_policy=…)` decides which errors
  may put a deployment into cooldown (`COOLDOWN_POLICY`);
- after a failed attempt LiteLLM asks `Logging.should_run_callback` about each failure
  callback (the Router's cooldown count is one), which asks the proxy's per-request
  callback controls (`x-litellm-disable-callbacks`); the first time, that imports ~400
  modules of LiteLLM's proxy server, ~1-2 s of CPU with the event loop blocked, every call
  in flight stalled. `litellm.global_disable_no_log_param = True` answers yes before that
  (`no-log` and those headers are proxy features; no request can carry them here);
- `litellm.turn_off_message_logging`, `suppress_debug_info`, `set_verbose` keep content out
  of LiteLLM's own logging;
- at import LiteLLM adds two filters to `uvicorn.access` (`litellm._logging`'s
  `_access_log_path_filter` and `_access_log_filter`: secret patterns scrubbed from every
  argument, ~0.15 ms per request). The gateway's access log has its own filter, which
  drops every query value (`portal.observability.logging.QueryRedactor`; a token sent as
  `?key=` never reaches a log), and the gateway serves no path that carries a secret, so
  they are removed (`drop_litellm_access_log_filters`);
- `Logging.async_success_handler` / `Logging.success_handler` are what LiteLLM runs after
  every answer to build, redact and hand its logging payload to callbacks. The gateway has
  none (the config check refuses them) and meters calls itself, so they are replaced by
  no-ops (`skip_success_logging`): ~0.7 ms of CPU per plain call and ~3.5 ms per stream,
  and prompt text never enters that payload. After a plain call LiteLLM schedules the
  handler as two tasks through its logging worker (~0.1 ms) if
  `Logging.claim_async_success_log` says so: it says no. With `allowed_fails_policy` set, the
  Router's cooldown counts failures only, so no success count is lost; failure handlers
  are kept;
- `Logging.response_cost_calculator` is how LiteLLM prices a response for its logging and
  `_hidden_params["response_cost"]`: once per plain answer (~0.8 ms of CPU, 7% of a plain
  call), three times per stream (~1.3 ms). The gateway prices every call from the usage
  the upstream reported (`usage_cost`, LiteLLM's `cost_per_token`), so plain and streamed
  calls are priced alike and LiteLLM's figure is never read: it returns None
  (`skip_litellm_pricing`);
- the httpx clients LiteLLM builds for the OpenAI SDK (`BaseOpenAILLM._get_async_http_client`:
  embeddings and text completions on OpenAI deployments, chat where the SDK path is
  taken) keep a cookie jar,
  so a cookie one upstream answer sets (api.openai.com's Cloudflare front sets `__cf_bm`)
  was sent with every later call on that client, whoever made it; LiteLLM's own clients
  (`AsyncHTTPHandler.create_client`) block cookies by policy (`blocked_cookie_jar`), after
  parsing each answer's. Every client either builds gets a cookie store that keeps
  nothing and parses nothing (`keep_no_upstream_cookies`; httpx's `Client._cookies`):
  ~2% of a plain call;
- text completions on a `text-completion-openai/…` deployment get no client from the
  Router, and LiteLLM's handler then builds a new OpenAI SDK client for every call
  (`llms/openai/completion/handler.py`, `build_async_openai_client`): a new connection
  (a TLS handshake in production) per call, its aiohttp session closed only by the
  garbage collector. With a static API key the gateway keeps one client per key, base,
  timeout, retries and organisation (`keep_text_completion_clients`), built by the same
  function with LiteLLM's cookie-less http client; closed at shutdown;
- upstream HTTP clients (aiohttp sessions) live in LiteLLM's module-level client cache
  and in each Router's `cache` (one SDK client per OpenAI-style deployment); nothing
  closes them on its own, so the gateway does at shutdown (`close_upstream_clients`);
- each call's synchronous set-up (`completion`, `text_completion`, `embedding`,
  `responses`, `anthropic_messages_handler`: parameters mapped, the request built) is run
  by LiteLLM in the event loop's default executor, a thread: a hop there and back per call
  and the GIL passed between two threads, ~0.5 ms of CPU per call under load. Where every
  deployment's provider builds its request without I/O (`INLINE_SETUP_PROVIDERS`: API keys
  from the environment, no token fetched), the default executor runs those set-ups inline
  (`run_request_setup_inline`); anything else submitted to it still gets a thread;
- at the end of every chat/text stream LiteLLM rebuilds the whole answer from its chunks
  (`litellm.stream_chunk_builder`, ~33 µs of CPU per chunk here: a 1,000-chunk answer,
  33 ms) for the usage it sends last, in a worker thread (`streaming_handler.asyncify`,
  anyio) — and, when the client asked for usage, builds it twice: once for the usage
  chunk, again on the next step for its logging, from the same, unchanged chunks. The
  bridge builds each stream's answer once (`build_each_stream_once`: the second ask gets
  the first build, remembered on the call's `Logging` object), and a short stream's build
  (at most `INLINE_CHUNK_BUILD_MAX_CHUNKS` chunks, ~1 ms) runs in the loop's thread, no
  hop; a longer one keeps the thread, so the loop is never held for long.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import logging
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import litellm
import orjson
from litellm.exceptions import Timeout as LiteLLMTimeout
from litellm.litellm_core_utils import streaming_handler
from litellm.litellm_core_utils.litellm_logging import Logging as CallLogging
from litellm.llms.anthropic.messages.native.handler import anthropic_messages_handler
from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients
from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler
from litellm.llms.openai.common_utils import BaseOpenAILLM
from litellm.llms.openai.completion import handler as text_completion_handler
from litellm.responses.main import responses as responses_setup
from litellm.router import Router
from litellm.types.router import AllowedFailsPolicy

__all__ = [
    "COOLDOWN_POLICY",
    "INLINE_SETUP_PROVIDERS",
    "LITELLM_SETTINGS_ALLOWED",
    "ROUTER_METHODS",
    "Router",
    "UpstreamFailure",
    "apply_litellm_settings",
    "build_each_stream_once",
    "build_router",
    "config_problems",
    "count_prompt_tokens",
    "deployment_of",
    "drop_litellm_access_log_filters",
    "group_of",
    "keep_no_upstream_cookies",
    "keep_text_completion_clients",
    "model_id_of",
    "output_limits",
    "run_request_setup_inline",
    "skip_litellm_pricing",
    "skip_success_logging",
    "to_jsonable",
    "upstream_failure",
    "usage_cost",
]

log = logging.getLogger(__name__)

ROUTER_METHODS = {
    "chat": "acompletion",
    "text": "atext_completion",
    "embeddings": "aembedding",
    "messages": "aanthropic_messages",
    "responses": "aresponses",
}

# A request's own mistakes (400, 404, 413, 422, content policy) must never cool a
# deployment down for everyone: allow "unlimited" such failures. 429, 5xx and timeouts
# keep LiteLLM's default (router_settings.allowed_fails, else LiteLLM's).
_NEVER = 1_000_000_000
COOLDOWN_POLICY = AllowedFailsPolicy(
    BadRequestErrorAllowedFails=_NEVER,
    NotFoundErrorAllowedFails=_NEVER,
    ContentPolicyViolationErrorAllowedFails=_NEVER,
    AuthenticationErrorAllowedFails=_NEVER,
)

# litellm_settings keys an operator may set; each is applied as `litellm.<key> = value`.
# Callbacks are refused: a third-party logger would receive prompts and completions.
LITELLM_SETTINGS_ALLOWED = frozenset(
    {
        "drop_params",
        "modify_params",
        "turn_off_message_logging",
        "request_timeout",
        "num_retries",
        "max_budget",
        "set_verbose",
        "json_logs",
        "suppress_debug_info",
    }
)
REPEATED_CHUNKS_ALLOWED = 2**62  # LiteLLM's `REPEATED_STREAMING_CHUNK_LIMIT`: never reached
_FORCED_LITELLM_SETTINGS = {
    "turn_off_message_logging": True,
    "set_verbose": False,  # print()s request bodies
    "suppress_debug_info": True,
    "json_logs": False,  # formats exceptions around our log scrubbing
}
# router_settings keys we own: an operator's value would undo a gateway guarantee.
_ROUTER_KEYS_OWNED = frozenset(
    {"allowed_fails_policy", "model_list", "fallback_on_unsupported_params"}
)
# A request's own 400 (invalid, too long for the context window, refused by a content
# policy) is answered as is, never sent on to a fallback, so no second provider receives
# content the first refused: `fallback_on_unsupported_params=False` stops the generic
# fallback on a provider's plain 400; a context-window or content-policy 400 would still
# take the generic `fallbacks` unless its own list names targets, so those default to none
# (an operator may still name some in config.yaml).
_NO_FALLBACK_ON_OWN_400: dict[str, Any] = {
    "context_window_fallbacks": [{"*": []}],
    "content_policy_fallbacks": [{"*": []}],
}


_TOP_LEVEL = frozenset({"model_list", "router_settings", "litellm_settings", "workforce_gateway"})


def config_problems(raw: Mapping[str, Any]) -> list[str]:
    """What config.yaml's LiteLLM sections ask that the gateway cannot honour (the
    `workforce_gateway` section and prices are checked by `portal.config`)."""
    problems = [
        f"{key}: not used by this gateway (LiteLLM's proxy server is not run); remove it"
        for key in raw
        if key not in _TOP_LEVEL
    ]
    router, settings = raw.get("router_settings") or {}, raw.get("litellm_settings") or {}
    if not isinstance(router, Mapping) or not isinstance(settings, Mapping):
        return [*problems, "router_settings and litellm_settings must be mappings"]
    return problems + router_settings_problems(router) + litellm_settings_problems(settings)


def router_settings_problems(settings: Mapping[str, Any]) -> list[str]:
    accepted = set(inspect.signature(Router.__init__).parameters) - {"self"}
    problems = []
    for key in settings:
        if key in _ROUTER_KEYS_OWNED:
            problems.append(f"router_settings.{key}: set by the gateway, remove it")
        elif key not in accepted:
            problems.append(f"router_settings.{key}: not a litellm.Router setting")
    return problems


def litellm_settings_problems(settings: Mapping[str, Any]) -> list[str]:
    return [
        f"litellm_settings.{key}: not supported by the gateway"
        + (" (a logging callback would receive prompt text)" if "callback" in key else "")
        for key in settings
        if key not in LITELLM_SETTINGS_ALLOWED
    ]


def apply_litellm_settings(settings: Mapping[str, Any]) -> None:
    """Module-level LiteLLM settings; ours win over the operator's where content is at stake."""
    for key, value in {**settings, **_FORCED_LITELLM_SETTINGS}.items():
        if key in LITELLM_SETTINGS_ALLOWED:
            setattr(litellm, key, value)
    litellm.global_disable_no_log_param = True  # the first failure imports no proxy code
    # LiteLLM's repeated-chunk guard ends a chat/text stream whose reply repeats one chunk
    # 100 times as an InternalServerError, which counts toward the deployment's cooldown:
    # one user's replies would move everyone's calls to the fallback. The output is capped
    # (`max_tokens` = what is reserved) and billed to its caller, so the guard is off.
    litellm.REPEATED_STREAMING_CHUNK_LIMIT = REPEATED_CHUNKS_ALLOWED  # type: ignore[attr-defined]
    litellm.callbacks = []
    litellm.success_callback = []
    litellm.failure_callback = []
    litellm._async_success_callback = []
    litellm._async_failure_callback = []
    skip_success_logging()
    skip_litellm_pricing()
    drop_litellm_access_log_filters()
    keep_no_upstream_cookies()
    keep_text_completion_clients()
    build_each_stream_once()


def drop_litellm_access_log_filters() -> None:
    """LiteLLM's filters on the server's access log, redundant here (module docstring)."""
    from litellm import _logging

    access = logging.getLogger("uvicorn.access")
    access.removeFilter(_logging._access_log_path_filter)
    access.removeFilter(_logging._access_log_filter)


async def _no_async_success_log(self: CallLogging, *args: Any, **kwargs: Any) -> None:
    return None


def _no_success_log(self: CallLogging, *args: Any, **kwargs: Any) -> None:
    return None


def _no_response_cost(self: CallLogging, *args: Any, **kwargs: Any) -> float | None:
    return None


def skip_litellm_pricing() -> None:
    """LiteLLM's own pricing of each response, which the gateway never reads (module
    docstring), is skipped for this process."""
    CallLogging.response_cost_calculator = _no_response_cost  # type: ignore[method-assign]


def _never_schedule(self: CallLogging) -> bool:
    return False


def skip_success_logging() -> None:
    """LiteLLM's per-answer success logging, which serves callbacks the gateway never has
    (module docstring), becomes a no-op for this process, and is not even scheduled."""
    CallLogging.async_success_handler = _no_async_success_log  # type: ignore[method-assign]
    CallLogging.success_handler = _no_success_log  # type: ignore[method-assign]
    CallLogging.claim_async_success_log = _never_schedule  # type: ignore[method-assign]


class _NoCookies(httpx.Cookies):
    """A client's cookie store that keeps nothing an answer sets, so it sends none."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def __bool__(self) -> bool:  # nothing to merge into a request
        return False


_build_openai_http_client = BaseOpenAILLM._get_async_http_client


def _cookieless_openai_http_client(shared_session: Any = None) -> Any:
    client: Any = _build_openai_http_client(shared_session=shared_session)
    if client is not None and client is not litellm.aclient_session:
        client._cookies = _NoCookies()
    return client


_build_litellm_http_client = AsyncHTTPHandler.create_client


def _cookieless_litellm_http_client(self: AsyncHTTPHandler, *args: Any, **kwargs: Any) -> Any:
    client: Any = _build_litellm_http_client(self, *args, **kwargs)
    client._cookies = _NoCookies()
    return client


def keep_no_upstream_cookies() -> None:
    """The upstream clients LiteLLM builds, shared by every user's calls, keep no cookie
    an upstream sets and parse none (module docstring)."""
    BaseOpenAILLM._get_async_http_client = staticmethod(_cookieless_openai_http_client)  # type: ignore[method-assign]
    AsyncHTTPHandler.create_client = _cookieless_litellm_http_client  # type: ignore[method-assign]


_build_text_completion_client = text_completion_handler.build_async_openai_client  # type: ignore[attr-defined]
_TEXT_CLIENTS_KEPT_AT_MOST = 64
_text_completion_clients: dict[tuple[Any, ...], Any] = {}


def _kept_text_completion_client(**options: Any) -> Any:
    """LiteLLM's `build_async_openai_client` for its text-completion handler, kept per
    static key and settings (module docstring). Without a key LiteLLM's own path, which
    keeps workload-identity clients itself."""
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
        if len(_text_completion_clients) < _TEXT_CLIENTS_KEPT_AT_MOST:
            _text_completion_clients[key] = client
    return client


def keep_text_completion_clients() -> None:
    text_completion_handler.build_async_openai_client = _kept_text_completion_client  # type: ignore[attr-defined,assignment]


def build_router(model_list: list[dict[str, Any]], router_settings: Mapping[str, Any]) -> Router:
    """One Router for the process. Each deployment gets `<model_name>#<index>` as id when
    it has none, so logs name deployments the operator recognises."""
    deployments = []
    for index, entry in enumerate(model_list):
        info = dict(entry.get("model_info") or {})
        info.setdefault("id", f"{entry['model_name']}#{index}")
        deployments.append({**entry, "model_info": info})
    router: Router = Router(
        model_list=deployments,
        **{**_NO_FALLBACK_ON_OWN_400, **router_settings},
        allowed_fails_policy=COOLDOWN_POLICY,
        fallback_on_unsupported_params=False,
    )
    return router


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
    """LiteLLM submits `partial(Context.run, partial(<set-up>, ...))`."""
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
    """Makes LiteLLM's request set-up run in the loop's thread (module docstring) if every
    deployment's provider is in `INLINE_SETUP_PROVIDERS`; says whether it did."""
    if not all(_provider_of(d) in INLINE_SETUP_PROVIDERS for d in router.registry().all()):
        return False
    loop.set_default_executor(_InlineRequestSetup())
    return True


INLINE_CHUNK_BUILD_MAX_CHUNKS = 32
_in_a_thread = streaming_handler.asyncify  # type: ignore[attr-defined]
_LAST_BUILD = "_wfg_last_stream_build"  # on LiteLLM's per-call Logging object


def _stream_builds_once(function: Any, **options: Any) -> Any:
    """`asyncify` as LiteLLM's stream handler uses it, except for `stream_chunk_builder`:
    built once per stream, in the loop's thread when short (module docstring)."""
    threaded = _in_a_thread(function, **options)
    if function is not litellm.stream_chunk_builder:
        return threaded

    async def build(*args: Any, **kwargs: Any) -> Any:
        chunks, call = kwargs.get("chunks") or [], kwargs.get("logging_obj")
        last = getattr(call, _LAST_BUILD, None)
        if last is not None and last[0] is chunks and last[1] == len(chunks):
            return last[2]
        if len(chunks) > INLINE_CHUNK_BUILD_MAX_CHUNKS:
            built = await threaded(*args, **kwargs)
        else:
            built = function(*args, **kwargs)
        if call is not None:
            setattr(call, _LAST_BUILD, (chunks, len(chunks), built))
        return built

    return build


def build_each_stream_once() -> None:
    streaming_handler.asyncify = _stream_builds_once  # type: ignore[attr-defined]


async def close_upstream_clients(router: Router | None) -> None:
    """Closes the upstream HTTP clients LiteLLM and the bridge keep (module docstring) and
    forgets them, so a later call opens new ones. Left open, their aiohttp sessions warn
    when the garbage collector finds them. `litellm.module_level_aclient` stays referenced
    by LiteLLM (created on first use); closed, it opens a new session when used again."""
    await close_litellm_async_clients()  # type: ignore[no-untyped-call]
    litellm.in_memory_llm_clients_cache.flush_cache()  # type: ignore[no-untyped-call]
    clients = list(router.health().store.in_memory_cache.cache_dict.values()) if router else []
    clients.append(vars(litellm).get("module_level_aclient"))
    clients.extend(_text_completion_clients.values())
    _text_completion_clients.clear()
    for client in clients:
        close = getattr(client, "close", None)
        if callable(close) and inspect.iscoroutinefunction(close):
            await close()
    if router is not None:
        router.health().store.in_memory_cache.flush_cache()  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=1024)
def _deployment(router: Router, model_id: str) -> Any:
    """`Router.get_deployment` builds a new pydantic `Deployment` on every call (~0.1 ms);
    the gateway never changes a Router's model list, so one per (router, id) is enough.
    Callers only read it."""
    return router.registry().deployment(model_id)


def deployment_of(router: Router, model_id: str | None) -> tuple[str, str | None]:
    """(litellm model, provider) of the deployment that answered."""
    deployment = _deployment(router, model_id) if model_id else None
    if deployment is None:
        return "", None
    params = deployment.litellm_params
    return str(params.model), getattr(params, "custom_llm_provider", None)


def group_of(router: Router, model_id: str | None, requested: str) -> str:
    """The model group of the deployment that answered (a fallback's, when one did)."""
    deployment = _deployment(router, model_id) if model_id else None
    return str(deployment.model_name) if deployment is not None else requested


def _hidden(response: Any) -> dict[str, Any]:
    if isinstance(response, dict):
        return response.get("_hidden_params") or {}
    return getattr(response, "_hidden_params", None) or {}


def model_id_of(response: Any) -> str | None:
    """The id of the deployment that answered (a plain response or a stream object)."""
    model_id = _hidden(response).get("model_id")
    return str(model_id) if model_id is not None else None


def usage_cost(
    router: Router,
    model_id: str | None,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    cache_creation_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> Decimal:
    """US$ of a call's reported usage at the answering deployment's price (LiteLLM's cost
    map or the deployment's configured price), cached input and reasoning priced as LiteLLM
    does; 0 when LiteLLM cannot price it (the caller then uses the price book)."""
    model, provider = deployment_of(router, model_id)
    if not model:
        return Decimal(0)
    # OpenAI's shape: prompt_tokens include the cached and cache-write ones. (Anthropic's
    # fields, `cache_read_input_tokens` & co., make LiteLLM add them to the prompt again
    # when the deployment's price is configured: cached input charged twice.)
    usage = litellm.Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        prompt_tokens_details={
            "cached_tokens": cached_tokens,
            "cache_write_tokens": cache_creation_tokens,
        },
        completion_tokens_details={"reasoning_tokens": reasoning_tokens},
    )
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model,
            custom_llm_provider=provider,
            usage_object=usage,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            custom_cost_per_token=_custom_price(router, model_id),
        )
    except Exception as exc:  # unknown to the cost map: the caller uses our price book
        log.debug("stream cost fell back to the price book (%s)", type(exc).__name__)
        return Decimal(0)
    return Decimal(str(prompt_cost)) + Decimal(str(completion_cost))


@functools.lru_cache(maxsize=1024)
def _custom_price(router: Router, model_id: str | None) -> Any:
    """The deployment's configured per-token prices, if any (cached as `_deployment`)."""
    deployment = _deployment(router, model_id) if model_id else None
    if deployment is None:
        return None
    for source in (deployment.model_info or {}, deployment.litellm_params.model_dump()):
        prices = {k: source.get(k) for k in ("input_cost_per_token", "output_cost_per_token")}
        if all(value is not None for value in prices.values()):
            return prices
    return None


class UpstreamFailure(Exception):
    """An upstream or routing failure, as the client should see it."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(kind)
        self.status = status
        self.kind = kind  # the LiteLLM exception class name (metrics, logs)
        self.message = message


_STATUS_MESSAGES = {
    401: "The upstream provider refused the gateway's credentials.",
    403: "The upstream provider refused the request.",
    404: "The upstream provider does not know this model or endpoint.",
    408: "The upstream provider timed out.",
    429: "The upstream provider is rate limiting; retry shortly.",
}


def upstream_failure(error: BaseException) -> UpstreamFailure:
    """Map a LiteLLM exception to what the client gets. A 4xx keeps LiteLLM's message (the
    caller's own request described back to the caller); anything else gets a fixed text,
    since it may name the operator's upstream. Never logged with its message."""
    if isinstance(error, UpstreamFailure):
        return error
    status = getattr(error, "status_code", None)
    kind = type(error).__name__
    if not isinstance(status, int) or not 400 <= status <= 599:
        status = 504 if isinstance(error, LiteLLMTimeout | TimeoutError) else 502
    message = getattr(error, "message", None)
    if status in (400, 413, 422) and isinstance(message, str):
        return UpstreamFailure(status, kind, _client_message(message))
    if status >= 500 or status not in _STATUS_MESSAGES:
        message = "The upstream provider failed to answer; retry shortly."
        return UpstreamFailure(502 if status < 500 else status, kind, message)
    return UpstreamFailure(status, kind, _STATUS_MESSAGES[status])


def _client_message(message: str) -> str:
    for prefix in ("litellm.BadRequestError: ", "litellm.UnprocessableEntityError: "):
        message = message.removeprefix(prefix)
    return message[:2000]


def to_jsonable(response: Any) -> Any:
    """A plain response as JSON data, without LiteLLM's private fields (`_hidden_params`
    names the operator's upstream)."""
    if isinstance(response, dict):
        return {k: v for k, v in response.items() if not k.startswith("_")}
    return response.model_dump(mode="json", exclude_none=True)


def count_prompt_tokens(kind: str, params: Mapping[str, Any]) -> int:
    """Input tokens of a request with LiteLLM's tokenizer (tiktoken; an approximation for
    other providers' tokenizers, hence the configured safety factor). Odd shapes fall back
    to a generous size estimate (a third of the JSON length)."""
    try:
        if kind in ("chat", "messages"):
            messages = list(params["messages"])
            system = params.get("system")
            if system is not None:
                messages.insert(0, {"role": "system", "content": _text_of(system)})
            return int(litellm.token_counter(messages=messages, tools=params.get("tools")))
        text = params.get("input", params.get("prompt"))
        if isinstance(text, str):
            return int(litellm.token_counter(text=text))
    except Exception as exc:
        log.debug("token count fell back to a size estimate (%s)", type(exc).__name__)
    return len(orjson.dumps(params, default=str)) // 3 + 1


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return " ".join(str(block.get("text", "")) for block in value if isinstance(block, dict))


def output_limits(model_list: list[dict[str, Any]]) -> dict[str, int]:
    """Model group → the smallest `max_output_tokens` among its deployments, from
    model_info or LiteLLM's cost map (groups with no known limit are absent)."""
    limits: dict[str, int] = {}
    for entry in model_list:
        info = entry.get("model_info") or {}
        limit = info.get("max_output_tokens") or info.get("max_tokens")
        if limit is None:
            try:
                known = litellm.get_model_info(model=entry["litellm_params"]["model"])
                limit = known.get("max_output_tokens") or known.get("max_tokens")
            except Exception:  # not in the cost map
                limit = None
        if isinstance(limit, int) and limit > 0:
            name = entry["model_name"]
            limits[name] = min(limits.get(name, limit), limit)
    return limits
