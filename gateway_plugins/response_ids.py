"""Responses ids as the provider made them.

LiteLLM's Router rewrites every Responses API id to `resp_` + base64 of
`litellm:custom_llm_provider:<p>;model_id:<deployment id>;response_id:<id>`, so that a
later `previous_response_id` finds the deployment again. The gateway stores nothing
upstream and refuses `previous_response_id`, so that routing hint serves no one, and the
deployment id is the operator's: the client gets the provider's own id back.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

__all__ = ["public_response_id", "with_public_response_id"]

_PREFIX = "resp_"
_MARK = "litellm:custom_llm_provider:"
_KEY = ";response_id:"


def public_response_id(response_id: str) -> str:
    """The provider's id inside a LiteLLM-encoded one; any other id unchanged."""
    if not response_id.startswith(_PREFIX):
        return response_id
    try:
        decoded = base64.b64decode(response_id[len(_PREFIX) :], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return response_id
    if not decoded.startswith(_MARK) or _KEY not in decoded:
        return response_id
    return decoded.split(_KEY, 1)[1]


def with_public_response_id(response: Any) -> None:
    """Rewrite `response.id` (a LiteLLM Responses object or its JSON dict) in place."""
    if isinstance(response, dict):
        if isinstance(response.get("id"), str):
            response["id"] = public_response_id(response["id"])
    elif isinstance(getattr(response, "id", None), str):
        response.id = public_response_id(response.id)
