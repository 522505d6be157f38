"""Log lines for operators: JSON (one object per line, the production default) or text,
each with the id of the request it belongs to.

`LOG_FORMAT` picks the format, `LOG_LEVEL` the level of our loggers and the server's;
`LITELLM_LOG` the level of LiteLLM's own loggers (default WARNING), which lose their own
handler and flow through ours. Content stays out whatever the level: the record factory
of `gateway_plugins.log_scrubbing` withholds the text of every logger not known to be
content-free (LiteLLM's included) and the message of every exception; these formatters
add only fixed fields and never a record's `extra` attributes (LiteLLM puts request
details there).

The server's access log names the path but never a query value (`QueryRedactor`): links
we mail carry one-time tokens there (`/reset/confirm?token=…`, `/verify?token=…`), and a
token copied from a log would still work.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from portal.observability import context

__all__ = [
    "JsonFormatter",
    "QueryRedactor",
    "TextFormatter",
    "logging_config",
    "redact_query",
    "route_litellm_logs",
]

LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router")


def _request_fields() -> dict[str, str]:
    fields: dict[str, str] = {}
    if (rid := context.request_id.get()) is not None:
        fields["request_id"] = rid
    if (cid := context.call_id.get()) is not None:
        fields["call_id"] = cid
    return fields


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "request_id"?, "call_id"?, "exception"?}`"""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_request_fields(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`12:00:00 INFO logger [request_id] message` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request)s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        fields = _request_fields()
        record.request = f" [{fields['request_id']}]" if "request_id" in fields else ""
        return super().format(record)


def redact_query(target: str) -> str:
    """`/reset/confirm?token=abc&x` → `/reset/confirm?token=…&x=…`: names stay, values go."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    names = (part.partition("=")[0] for part in query.split("&"))
    return f"{path}?{'&'.join(f'{name}=…' for name in names)}"


class QueryRedactor(logging.Filter):
    """Drop query values from access-log records (uvicorn passes the request target as an
    argument: `'%s - "%s %s HTTP/%s" %d'`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_query(arg) if isinstance(arg, str) and "?" in arg else arg
                for arg in record.args
            )
        return True


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping; also given to uvicorn as `log_config`, so
    every worker process configures the same way."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    level = level.upper()
    server = {"handlers": [], "level": level, "propagate": True}
    access = {**server, "filters": ["redact_query"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact_query": {"()": f"{__name__}.QueryRedactor"}},
        "formatters": {"default": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {"uvicorn": server, "uvicorn.error": server, "uvicorn.access": access},
    }


def route_litellm_logs(level: str = "WARNING") -> None:
    """Send LiteLLM's loggers through the root handler at `level` (`LITELLM_LOG`, as
    `Settings.litellm_log_level`); call after importing LiteLLM.

    LiteLLM attaches its own stream handler at import, with its own format; its logger
    filters (secret redaction) stay. Never set LiteLLM's JSON_LOGS: its JSON mode builds
    records for uncaught exceptions by hand, around the record factory, message included.
    """
    level = level.upper()
    if level not in logging.getLevelNamesMapping():
        level = "WARNING"
    for name in LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(level)
