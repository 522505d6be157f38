"""One admitted call, as the pipeline's steps hand it on (`pipeline` admits it; `upstream`
and `streaming` carry it to its end), and the header that names it to the client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway_plugins.errors import ApiFormat
from gateway_plugins.rate_limits import InFlightSlot
from gateway_plugins.validation import ValidRequest
from portal.tokens.service import TokenIdentity

__all__ = ["CALL_ID_HEADER", "Call", "api_of", "call_id_header"]

# Kept from the proxy days: clients match usage rows (and `/v1/calls/{id}`) by it.
CALL_ID_HEADER = "x-litellm-call-id"


@dataclass
class Call:
    """One admitted call: who, what, what is held."""

    call_id: str
    kind: str
    identity: TokenIdentity
    request: ValidRequest
    reserved_units: int
    estimated_prompt_tokens: int
    slot: InFlightSlot
    started_at: datetime
    upstream_since: float = 0.0  # time.time() when the Router was called
    client_left: bool = False  # the client disconnected; the call runs on and is billed

    @property
    def api(self) -> ApiFormat:
        return api_of(self.kind)


def api_of(kind: str) -> ApiFormat:
    """The error format of an endpoint: Anthropic's on /v1/messages, OpenAI's elsewhere."""
    return "anthropic" if kind == "messages" else "openai"


def call_id_header(call: Call) -> dict[str, str]:
    return {CALL_ID_HEADER: call.call_id}
