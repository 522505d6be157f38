"""The request being served, as context variables: set by `middleware`, read by log
formatters and metrics. Tasks created while serving a request (LiteLLM's logging
callbacks included) inherit them."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

__all__ = ["call_id", "new_request_id", "request_id", "request_started"]

request_id: ContextVar[str | None] = ContextVar("wfg_request_id", default=None)
call_id: ContextVar[str | None] = ContextVar("wfg_call_id", default=None)
"""LiteLLM's call id, once the gateway's pre-call hook has seen it."""
request_started: ContextVar[float | None] = ContextVar("wfg_request_started", default=None)
"""time.time() when the request arrived."""

# A caller's own id (from a load balancer, say) is kept only if it is short and plain.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def new_request_id(offered: str | None = None) -> str:
    if offered and _ACCEPTABLE.match(offered):
        return offered
    return uuid.uuid4().hex
