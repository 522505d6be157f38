"""WFG_BRIDGE_WITHOUT (the bench's A/B switch): each named speed patch is left out of
the process, the others stay, and a name that is no patch stops the start."""

from __future__ import annotations

import os
import subprocess

from tests.gateway.litellm_pins.support import run_python

_PATCHES_IN_PLACE = """
import asyncio
from gateway_plugins.server import prepare_environment
prepare_environment()
from litellm.litellm_core_utils import streaming_handler
from litellm.litellm_core_utils.litellm_logging import Logging
from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import litellm_pricing, stream_build
from gateway_plugins.litellm_bridge import model_info_memo, success_logging
from litellm.router_rust.surface.health import RustHealthCallbacks
from litellm.responses import bridge_check
from litellm.litellm_core_utils.streaming_chunk_builder_utils import ChunkProcessor
from litellm.llms.base_llm.base_model_iterator import BaseModelResponseIterator
from gateway_plugins.litellm_bridge import sse_json, stream_usage_scan, streamed_delta
litellm_bridge.apply_litellm_settings({})
built = litellm_bridge.build_router(
    [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4.1-nano", "api_key": "k"}}], {}
)
in_place = {
    "skip_success_logging": Logging.success_handler is success_logging._no_success_log,
    "skip_litellm_pricing": Logging.response_cost_calculator is litellm_pricing._no_response_cost,
    "build_each_stream_once": streaming_handler.asyncify is stream_build._stream_builds_once,
    "run_request_setup_inline": litellm_bridge.run_request_setup_inline(
        asyncio.new_event_loop(), built
    ),
    "remember_model_info": isinstance(
        bridge_check.get_model_info_helper, model_info_memo._Remembered
    ),
    "skip_unused_router_bookkeeping": hasattr(
        RustHealthCallbacks.__dict__["repin_after_success"], "wfg_original"
    ),
    "read_deltas_directly": streaming_handler.CustomStreamWrapper._accumulate_streamed_delta
    is streamed_delta._accumulate_directly,
    "decode_sse_with_orjson": BaseModelResponseIterator._string_to_dict_parser
    is sse_json._decoded,
    "find_stream_usage_directly": ChunkProcessor.extract_usage_chunk
    is stream_usage_scan._extract_directly,
    "chat_without_openai_sdk": __import__("os").environ.get(
        "EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER"
    ) == "true",
}
print(*sorted(name for name, on in in_place.items() if on))
"""


def _run(without: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WFG_BRIDGE_WITHOUT": without}
    env.pop("EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER", None)
    return run_python(_PATCHES_IN_PLACE, env)


def test_the_named_speed_patches_are_left_out_and_the_others_stay() -> None:
    done = _run("build_each_stream_once, chat_without_openai_sdk, read_deltas_directly")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [
        "decode_sse_with_orjson",
        "find_stream_usage_directly",
        "remember_model_info",
        "run_request_setup_inline",
        "skip_litellm_pricing",
        "skip_success_logging",
        "skip_unused_router_bookkeeping",
    ]


def test_a_name_that_is_no_speed_patch_stops_the_start() -> None:
    done = _run("keep_no_upstream_cookies")
    assert done.returncode != 0
    assert "WFG_BRIDGE_WITHOUT: unknown keep_no_upstream_cookies" in done.stderr
