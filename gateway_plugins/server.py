"""The gateway process: our ASGI app (`gateway_plugins.app`) served by uvicorn.

Run with `gateway-admin serve gateway` (or `python -m gateway_plugins.server`). Before
LiteLLM is imported: its price map is read from the installed package, never fetched
(`LITELLM_LOCAL_MODEL_COST_MAP=True`), and the log-record scrubber is installed, so no
LiteLLM log line can carry request content.
"""

from __future__ import annotations

import logging
import logging.config
import os
from pathlib import Path
from typing import Any

from gateway_plugins.bridge_switches import without

__all__ = ["CHAT_WITHOUT_OPENAI_SDK", "create_app", "main", "prepare_environment"]

log = logging.getLogger(__name__)

# LiteLLM's switch, read per call: chat on OpenAI deployments goes through its own HTTP
# handler, not the OpenAI SDK (gateway_plugins/litellm_bridge/openai_chat.py says why).
CHAT_WITHOUT_OPENAI_SDK = ("EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER", "true")


def prepare_environment(env: Any = os.environ) -> None:
    """What LiteLLM must see before it is imported."""
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch prices from the internet
    switch, on = CHAT_WITHOUT_OPENAI_SDK
    env[switch] = on
    if without("chat_without_openai_sdk"):  # the bench's A/B only
        del env[switch]
    env.setdefault("LITELLM_DONT_SHOW_FEEDBACK_BOX", "True")
    # LiteLLM's JSON_LOGS mode formats uncaught exceptions around the log-record factory,
    # message (and so content) included; our LOG_FORMAT=json replaces it.
    env.pop("JSON_LOGS", None)


def create_app() -> Any:
    """The app factory uvicorn calls in each worker."""
    from gateway_plugins.heap import pause_collection_for_startup
    from gateway_plugins.log_scrubbing import install_log_scrubbing
    from gateway_plugins.warmup import watch_imports

    pause_collection_for_startup()  # resumed, start-up heap frozen, by the app's lifespan
    watch_imports()  # from here on, what is imported after ready is counted

    prepare_environment()
    install_log_scrubbing()
    import gateway_plugins.litellm_bridge  # noqa: F401  (imports LiteLLM after the scrubber)
    from gateway_plugins.app import build_app
    from portal.observability.logging import route_litellm_logs
    from portal.settings import get_settings

    settings = get_settings()
    route_litellm_logs(settings.litellm_log_level)
    return build_app(settings)


def main() -> None:
    import functools

    import uvicorn

    from gateway_plugins.sockets import HeaderDeadline
    from portal.config.deployment import refuse_unsafe_production, shared_state_problems
    from portal.config.loader import load_plugin_settings
    from portal.observability.logging import logging_config
    from portal.settings import get_settings

    prepare_environment()
    settings = get_settings()
    refuse_unsafe_production(settings, services=("gateway",))
    log_config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(log_config)
    for problem in shared_state_problems(settings):
        log.warning("%s", problem)
    _reset_metrics_directory()
    plugin = load_plugin_settings(settings.config_path)
    uvicorn.run(
        "gateway_plugins.server:create_app",
        factory=True,
        host=settings.gateway_host,
        port=settings.gateway_port,
        workers=settings.gateway_workers,
        timeout_graceful_shutdown=settings.gateway_graceful_seconds,
        log_level=settings.log_level,
        log_config=log_config,
        # Slow or idle clients cannot hold sockets (docs/operations.md, "Slow clients").
        # (uvicorn calls `http` with its own arguments: a partial of the class does.)
        http=functools.partial(HeaderDeadline, header_seconds=plugin.timeouts.header_seconds),  # type: ignore[arg-type]
        timeout_keep_alive=plugin.timeouts.keep_alive_seconds,
        limit_concurrency=plugin.limits.max_connections,
    )


def _reset_metrics_directory() -> None:
    """Samples of a previous run would be summed into this one's; start from empty.

    Read from the process environment, as prometheus_client reads it (not a setting)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
