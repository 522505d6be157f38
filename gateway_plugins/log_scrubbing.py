"""Log records without content: installed before LiteLLM is imported (the other layers:
`litellm_bridge.apply_litellm_settings`). Kept free of LiteLLM imports on purpose."""

from __future__ import annotations

import logging
import traceback
import warnings
from typing import Any

__all__ = ["install_log_scrubbing", "requests_may_arrive"]

# Loggers whose message text is known to be content-free (ours, the ASGI server's
# fixed templates, HTTP clients' request lines). Every other logger's text is withheld.
_TRUSTED_LOGGERS = ("portal", "gateway_plugins", "uvicorn", "httpx", "httpcore", "alembic")


def install_log_scrubbing() -> None:
    """Wrap the global LogRecord factory once (covers handlers added later, too). Python
    warnings become log records of `py.warnings` (scrubbed like any other logger's): a
    warning's text can quote content (pydantic's serialization warnings quote the value,
    e.g. a reply's last characters) and was written to stderr as is."""
    logging.captureWarnings(True)
    # LiteLLM's embedding type says list[float]; a base64 embedding (the openai SDK's
    # default) is a string, which pydantic serializes as is but warns about: a withheld
    # line on every such call, telling nothing.
    warnings.filterwarnings("ignore", message="Pydantic serializer warnings", category=UserWarning)
    current = logging.getLogRecordFactory()
    if getattr(current, "_wfg_scrubbing", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        _scrub_record(record)
        return record

    factory._wfg_scrubbing = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_serving = False


def requests_may_arrive() -> None:
    """Called once the app has started, before the server accepts a connection. Until
    then no request content exists, so LiteLLM's start-up warnings (configuration
    advice) keep their text; its debug/info lines stay withheld (they can dump settings
    and keys)."""
    global _serving
    _serving = True


def _scrub_record(record: logging.LogRecord) -> None:
    if record.exc_info and record.exc_info[1] is not None:
        exc_type, _exc, tb = record.exc_info
        frames = "".join(traceback.format_tb(tb)) if tb is not None else ""
        name = exc_type.__name__ if exc_type else "Exception"
        record.exc_text = f"Traceback (most recent call last):\n{frames}{name}: [message withheld]"
        record.exc_info = None
    if record.stack_info:
        record.stack_info = None
    if record.name.startswith(_TRUSTED_LOGGERS):
        return
    if not _serving and record.levelno >= logging.WARNING:
        return
    record.msg = (
        f"{record.name} {record.levelname.lower()} at {record.module}:{record.lineno} "
        "(text withheld: it can quote request content)"
    )
    record.args = ()
