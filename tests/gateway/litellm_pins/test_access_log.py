"""access_log.py: LiteLLM adds its filters to uvicorn's access log at import; the bridge
removes them. What keeps a token sent as `?key=` out of the access log is ours
(`logging_config`'s QueryRedactor; end to end: tests/gateway/test_routes.py)."""

from __future__ import annotations

import logging

from gateway_plugins.litellm_bridge import access_log
from tests.gateway.litellm_pins.support import run_python

_FILTERS_AT_IMPORT = """
import logging
import litellm
print(*sorted(type(f).__name__ for f in logging.getLogger("uvicorn.access").filters))
"""


def test_litellm_still_adds_the_filters_the_bridge_removes() -> None:
    """In a fresh process: were they gone from LiteLLM, the patch would be dead code."""
    done = run_python(_FILTERS_AT_IMPORT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["AccessLogPathFilter", "AccessLogRedactionFilter"]


def test_litellm_access_log_filters_are_gone_and_ours_drops_query_values() -> None:
    from litellm import _logging

    from portal.observability.logging import QueryRedactor, logging_config

    access = logging.getLogger("uvicorn.access")
    access.addFilter(_logging._access_log_filter)  # as LiteLLM's import leaves it
    access.addFilter(_logging._access_log_path_filter)
    access_log.drop_litellm_access_log_filters()
    litellm_filters = (_logging.AccessLogRedactionFilter, _logging.AccessLogPathFilter)
    assert not [f for f in access.filters if isinstance(f, litellm_filters)]

    config = logging_config("info", "text")
    (name,) = config["loggers"]["uvicorn.access"]["filters"]
    assert config["filters"][name]["()"].endswith(".QueryRedactor")
    target = "/v1beta/models/x:generateContent?key=wfg_secret&alt=sse"
    args = ("127.0.0.1:1", "POST", target, "1.1", 404)
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 1, '%s - "%s %s" %s %d', args, None
    )
    assert QueryRedactor().filter(record)
    assert "wfg_secret" not in record.getMessage()
    assert "/v1beta/models/x:generateContent?key=" in record.getMessage()
