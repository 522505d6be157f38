"""List every route the app serves, with its full path, methods and name.

FastAPI (0.16x) keeps included routers as branches rather than copying their routes
into `app.routes`; this walks the branches (duck-typed, so flat route lists work too)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["RouteInfo", "iter_routes"]


@dataclass(frozen=True)
class RouteInfo:
    path: str
    methods: frozenset[str]
    name: str | None


def iter_routes(routes: Iterable[object], prefix: str = "") -> Iterator[RouteInfo]:
    for route in routes:
        branch = getattr(route, "original_router", None)
        if branch is not None:
            context = getattr(route, "include_context", None)
            yield from iter_routes(branch.routes, prefix + getattr(context, "prefix", ""))
            continue
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if path is not None and methods is not None:
            yield RouteInfo(prefix + path, frozenset(methods), getattr(route, "name", None))
