"""How pytest-xdist shares the suite between its workers (`make test`: two).

A test parametrized by database backend (`[sqlite]`, `[…-postgresql]`) runs on the worker
that runs every test of that backend, so the session's gateways of a backend start once
(a gateway process costs ~10 s of CPU, most of it importing LiteLLM). Any other test runs
with the rest of its module, so a module's own gateway starts once too. Workers take
these groups one at a time as they free up."""

from __future__ import annotations

import re

from xdist.scheduler import LoadScopeScheduling

__all__ = ["BackendOrModuleScheduling", "group_of"]

_BACKENDS = ("sqlite", "postgresql")
_PARAMS = re.compile(r"\[(?P<ids>[^\]]*)\]$")


def group_of(nodeid: str) -> str:
    """The backend a test is parametrized with, else its module."""
    found = _PARAMS.search(nodeid)
    if found:
        for backend in _BACKENDS:
            if backend in found["ids"].split("-"):
                return backend
    return nodeid.split("::", 1)[0]


class BackendOrModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]
    def _split_scope(self, nodeid: str) -> str:
        return group_of(nodeid)
