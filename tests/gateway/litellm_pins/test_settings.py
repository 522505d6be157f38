"""settings.py: what the gateway accepts of config.yaml's LiteLLM sections, what it forces,
and that the first failed call imports none of LiteLLM's proxy server."""

from __future__ import annotations

import os

from gateway_plugins import litellm_bridge
from tests.gateway.litellm_pins.support import run_python
from tests.gateway.support import gateway_config


def test_message_logging_stays_off_and_callbacks_stay_empty() -> None:
    import litellm

    litellm_bridge.apply_litellm_settings({"turn_off_message_logging": False, "set_verbose": True})
    assert litellm.turn_off_message_logging is True
    assert litellm.set_verbose is False
    assert litellm.callbacks == litellm.success_callback == litellm.failure_callback == []


def test_config_sections_litellm_cannot_honour_are_named() -> None:
    problems = litellm_bridge.config_problems(
        {
            "model_list": [],
            "general_settings": {"custom_auth": "x"},
            "router_settings": {"no_such_setting": 1, "allowed_fails_policy": {}},
            "litellm_settings": {"success_callback": ["langfuse"], "drop_params": True},
        }
    )
    assert problems == [
        "general_settings: not used by this gateway (LiteLLM's proxy server is not run); remove it",
        "router_settings.no_such_setting: not a litellm.Router setting",
        "router_settings.allowed_fails_policy: set by the gateway, remove it",
        "litellm_settings.success_callback: not supported by the gateway "
        "(a logging callback would receive prompt text)",
    ]
    assert litellm_bridge.config_problems(gateway_config().raw) == []


_FIRST_FAILURE = """
import asyncio, os, sys
import gateway_plugins.app  # what the gateway process has imported when it serves
from gateway_plugins import litellm_bridge
from tests.fakes.upstream import FakeUpstream
from tests.gateway.support import gateway_config

upstream = FakeUpstream().start()
os.environ.update(upstream.env())
raw = gateway_config().raw
litellm_bridge.apply_litellm_settings(raw.get("litellm_settings") or {})
router = litellm_bridge.build_router(raw["model_list"], {"num_retries": 0})

async def main():
    await router.acompletion(model="gpt-4.1-nano", messages=[{"role": "user", "content": "a"}])
    before = set(sys.modules)
    upstream.fail_next(500)
    try:
        await router.acompletion(model="gpt-4.1-nano", messages=[{"role": "user", "content": "b"}])
    except Exception as exc:
        print("failed with", getattr(exc, "status_code", None))
    await asyncio.sleep(0.5)  # LiteLLM's failure logging runs as tasks
    print("new modules:", *sorted(set(sys.modules) - before))
    await litellm_bridge.close_upstream_clients(router)

asyncio.run(main())
upstream.stop()
"""


def test_the_first_failed_call_imports_nothing() -> None:
    """LiteLLM's failure logging imports ~400 modules of its proxy server the first time
    it runs unless `global_disable_no_log_param` is set: seconds with the event loop
    blocked, in the middle of serving. In a fresh process with the gateway's imports, so
    nothing else imported them yet."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = run_python(_FIRST_FAILURE, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "failed with 500" in done.stdout
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("new modules:")]
    imported = line.split()[2:]
    # two small ones of its guardrail check are fine; its proxy server (~400) is not
    assert len(imported) <= 5, imported
