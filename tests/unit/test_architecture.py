"""Dependencies point one way (docs/architecture.md): entry points -> domains -> base.

Every import in portal/ and gateway_plugins/ is read with `ast`, at module level, inside
functions and under TYPE_CHECKING alike, and mapped to the portal package it names
(`portal.credits.ledger` -> `credits`; top-level modules such as `portal.errors` count as
packages). A package may import only packages of a lower layer, so no two packages can
import each other, and a test looks for cycles as well.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from portal.settings import PROJECT_ROOT

# Lower number = lower layer. Same number = siblings, which must not import each other.
LAYERS: dict[str, int] = {
    # base: knows no domain
    "errors": 0,
    "settings": 0,
    "db": 1,
    "config": 1,
    "observability": 2,
    # domains, lowest first
    "email": 10,
    "sessions": 10,
    "accounts": 11,
    "tokens": 12,
    "credits": 13,  # a hold counts on its token's spending limit (`tokens.spending`)
    "usage": 14,
    "connect": 14,  # connecting an app: codes that become tokens
    "billing": 15,
    "jobs": 16,  # background work across domains: balance alerts (email, auto top-up)
    "models": 16,  # portal/models.py: every table, for Alembic, privacy and schema.prisma
    "privacy": 17,
    "retention": 17,
    # entry points
    "gateway_plugins": 20,
    "web": 20,
    "migrations": 20,
    "cli": 21,  # `gateway-admin serve` starts the gateway
}


def _node(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "gateway_plugins":
        return "gateway_plugins"
    if parts[0] != "portal" or len(parts) < 2:
        return None
    return parts[1]


def _sources() -> list[tuple[Path, str]]:
    files = sorted((PROJECT_ROOT / "portal").rglob("*.py"))
    files += sorted((PROJECT_ROOT / "gateway_plugins").rglob("*.py"))
    found = []
    for path in files:
        parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((path, ".".join(parts)))
    return found


def _imported(path: Path, module: str) -> list[tuple[str, int]]:
    """Every module `path` imports, with the line."""
    package = module.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # `from portal import models` imports portal.models
            names += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return names


def package_edges() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> where, for every import between two different packages."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path, module in _sources():
        source = _node(module)
        if source is None:
            continue
        for name, line in _imported(path, module):
            target = _node(name)
            if target is not None and target != source:
                where = f"{path.relative_to(PROJECT_ROOT)}:{line} imports {name}"
                edges[(source, target)].append(where)
    return edges


def test_every_package_has_a_layer() -> None:
    found = {_node(module) for _path, module in _sources()} - {None}
    missing = found - LAYERS.keys()
    assert not missing, f"add to LAYERS (and docs/architecture.md): {missing}"


def test_imports_point_down() -> None:
    against = [
        f"{source} ({LAYERS[source]}) -> {target} ({LAYERS[target]}): {where[0]}"
        for (source, target), where in sorted(package_edges().items())
        if LAYERS[target] >= LAYERS[source]
    ]
    assert not against, "imports against the direction:\n" + "\n".join(against)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in package_edges():
        graph[source].add(target)
    cycles = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def test_the_gateway_imports_only_domains_and_base() -> None:
    entry_points = {name for name, layer in LAYERS.items() if layer >= 20}
    wrong = [
        where[0]
        for (source, target), where in package_edges().items()
        if source == "gateway_plugins" and target in entry_points
    ]
    assert not wrong, wrong


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n    from portal.billing import runtime\n    import portal.web.app\n",
        encoding="utf-8",
    )
    assert [name for name, _ in _imported(source, "portal.config.m")] == [
        "portal.billing.runtime",
        "portal.web.app",
    ]
