"""Patch: LiteLLM's filters on uvicorn's access log, removed.

At import LiteLLM adds two filters to `uvicorn.access` (`litellm._logging`'s
`_access_log_path_filter` and `_access_log_filter`: secret patterns scrubbed from every
argument, ~0.15 ms per request). The gateway's access log drops every query value
(`portal.observability.logging.QueryRedactor`) and the gateway serves no path that
carries a secret, so they are redundant.
"""

from __future__ import annotations

import logging

__all__ = ["drop_litellm_access_log_filters"]


def drop_litellm_access_log_filters() -> None:
    from litellm import _logging

    access = logging.getLogger("uvicorn.access")
    access.removeFilter(_logging._access_log_path_filter)
    access.removeFilter(_logging._access_log_filter)
