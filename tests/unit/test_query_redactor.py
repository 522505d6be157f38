"""The gateway's access log keeps query names, never their values: a token sent as `?key=`
never reaches a log (`portal.observability.logging.QueryRedactor`; end to end:
tests/gateway/test_routes.py)."""

from __future__ import annotations

import logging

from portal.observability.logging import QueryRedactor, logging_config


def test_the_access_log_drops_query_values() -> None:
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
