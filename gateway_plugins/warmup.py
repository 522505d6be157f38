"""No first-call stall: what LiteLLM imports lazily is imported before the gateway is ready.

LiteLLM imports much of its code on first use: the first streamed Anthropic call imported
~300 modules of its proxy package (~2 s of CPU) on the event loop, the first chat stream
~50, with every call in flight waiting. `import_lazy_modules` imports them while the app
starts (before `/readyz` can answer), and `ImportWatch` counts what is imported after
that: `wfg_gateway_modules_imported_after_ready` should stay 0, and the modules are named
in a warning at shutdown. `tests/gateway/test_first_call_imports_e2e.py` makes the first
call of every kind on a fresh gateway and fails, naming them, when the list falls behind
LiteLLM (re-run it after an upgrade: `make litellm-check`).
"""

from __future__ import annotations

import logging
import sys

from portal.observability.metrics import gauge

__all__ = ["LAZY_MODULES", "ImportWatch", "import_lazy_modules", "watch_imports"]

log = logging.getLogger(__name__)

# Found by the test above on LiteLLM 1.110.2: the modules whose import loads everything
# the first call of each kind (each endpoint, plain and streamed, each provider, a failed
# call) loads, ~380 modules. The last ones LiteLLM tries and does not find here (optional
# packages), at each use.
LAZY_MODULES: tuple[str, ...] = (
    "anyio._core._sockets",
    "anyio._core._streams",
    "litellm.litellm_core_utils.default_encoding",
    "litellm.llms.anthropic.messages.native.fake_stream_iterator",
    "litellm.llms.anthropic.messages.native.streaming_iterator",
    "litellm.llms.github_copilot.per_user_auth",
    "litellm.llms.vertex_ai.context_caching.vertex_ai_context_caching",
    "litellm.passthrough.timeout_utils",
    "litellm.proxy.openai_files_endpoints.common_utils",
    "litellm.proxy.pass_through_endpoints.streaming_handler",
    "litellm.router_rust.invoke.prompt_management",
    "litellm.router_strategy.auto_router.baseline_request",
    "litellm.router_utils.client_initalization_utils",
    "litellm.router_utils.embedding_batch_size_check",
    "litellm.router_utils.pre_call_checks.continuation_prefill_check",
    "litellm.rust_bridge.logger",
    "litellm.types.litellm_core_utils.streaming_chunk_builder_utils",
    # an embedding in base64 (the openai SDK's default) goes through the OpenAI SDK
    "openai.lib._parsing._embeddings",
    "openai.lib._request_context",
    "openai.resources.embeddings",
    # optional, absent: tried, not found
    "enterprise.enterprise_hooks",
    "litellm.integrations.otel.logger",
    "litellm_enterprise.enterprise_callbacks.send_emails.base_email",
    "opentelemetry.sdk._logs",
)


def import_lazy_modules(names: tuple[str, ...] = LAZY_MODULES) -> None:
    """Imports each module. One that is absent (optional, or renamed by an upgrade) is
    passed over: the gateway still starts, and the test above names what a call loads."""
    for name in names:
        try:
            # the statement's own path (importlib.import_module raises no `import` event
            # for the module it is asked for, so a failed one would count later)
            __import__(name)
        except ImportError:
            log.debug("not importable before ready: %s", name)


_LATE = gauge(
    "wfg_gateway_modules_imported_after_ready",
    "Python modules first imported (or tried) after the gateway became ready: each stalled "
    "the event loop.",
)


class ImportWatch:
    """Names each module first imported, or tried and not found, after `ready()` (Python's
    `import` audit event: raised when a module is looked for, not when it is already
    loaded). A failed import is tried again at each use, so the names tried before ready
    are remembered too: the warm-up tries LiteLLM's optional ones (OpenTelemetry, its
    enterprise package) once, and they are not counted later. Started before the app
    is built (`server.create_app`): the hook stays for the life of the process."""

    def __init__(self) -> None:
        self._seen = set(sys.modules)
        self._ready = False
        self.late: list[str] = []
        sys.addaudithook(self._on_audit_event)

    def _on_audit_event(self, event: str, args: tuple[object, ...]) -> None:
        if event != "import" or args[0] in self._seen:
            return
        name = str(args[0])
        self._seen.add(name)
        if self._ready:
            self.late.append(name)
            _LATE.inc()

    def ready(self) -> None:
        self._ready = True

    def report(self) -> None:
        if self.late:
            log.warning(
                "%d modules were imported after ready: %s", len(self.late), ", ".join(self.late)
            )


_watch: ImportWatch | None = None


def watch_imports() -> ImportWatch:
    """The process's one `ImportWatch`, started on first use."""
    global _watch
    if _watch is None:
        _watch = ImportWatch()
    return _watch
