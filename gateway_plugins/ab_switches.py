"""The bench's A/B switches (`WFG_FAST_PATHS_OFF`, `WFG_BRIDGE_WITHOUT`, `WFG_FAIRNESS_OFF`):
a comma-separated list of names, each one of a known set. An unknown name stops the start
rather than measure nothing (bench/README.md)."""

from __future__ import annotations

__all__ = ["named"]


def named(variable: str, value: str, known: frozenset[str]) -> frozenset[str]:
    """The names listed in `value` (the setting `variable`); ValueError for an unknown one."""
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    if unknown := sorted(names - known):
        raise ValueError(
            f"{variable}: unknown {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return names
