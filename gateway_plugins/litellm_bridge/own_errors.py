"""Patch: an upstream 413 or 422 is the request's own error, like its 400.

A request too large for the upstream (413) or that it cannot process (422) fails the same
way on any deployment; sending it on would hand the content to a second provider, and
counting it as the deployment's failure lets one user's requests cool the model down for
everyone. The Router's core (compiled, `litellm.router_rust`) decides fallbacks, retries
and cooldowns from the failure document `router_rust.core.attempt_failure` writes for each
failed attempt; it spares a provider's 400 `BadRequestError` all three when
`fallback_on_unsupported_params` is off (`router.build_router`), but a 413 is an
`APIError`/`BadRequestError` with its own status and a 422 an `UnprocessableEntityError`,
which fall back (and a 422 counts toward cooldown). The document of a 413 or 422 reads as
a provider's 400 instead; the exception the caller gets keeps its status, so the client
still sees 413 / 422 (with a fixed text: `upstream.failure_body`). Every reader of the
document imports `attempt_failure` from `router_rust.core` when it runs, so replacing the
module's function reaches all of them (the pin checks each).
"""

from __future__ import annotations

from collections.abc import Mapping

from litellm.router_rust import core

__all__ = ["OWN_ERROR_STATUSES", "treat_own_errors_as_400"]

OWN_ERROR_STATUSES = frozenset({413, 422})
_attempt_failure = core.attempt_failure


def _own_errors_as_400(error: BaseException) -> Mapping[str, object]:
    failure = _attempt_failure(error)
    if failure.get("status") not in OWN_ERROR_STATUSES:
        return failure
    classes = failure.get("classes")
    return {
        **failure,
        "status": 400,
        "kind": "BadRequestError",
        "llm_provider": True,
        "classes": ["BadRequestError", *(classes if isinstance(classes, list) else [])],
    }


def treat_own_errors_as_400() -> None:
    core.attempt_failure = _own_errors_as_400
