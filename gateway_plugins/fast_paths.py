"""The hand-written fast paths the gateway can take past its libraries, and the switch
that turns them off for an A/B (`bench/README.md`): `WFG_FAST_PATHS_OFF`, a
comma-separated list of names, read once at start.

- `inline_sqlite`: SQLite on `portal.db.sqlite_inline` instead of aiosqlite;
- `driver`: the per-call money statements sent by the raw driver (`portal.db.driver`)
  instead of SQLAlchemy Core on a pooled connection;
"""

from __future__ import annotations

import os

__all__ = ["ENV", "NAMES", "turned_off"]

ENV = "WFG_FAST_PATHS_OFF"
NAMES = frozenset({"inline_sqlite", "driver"})


def turned_off() -> frozenset[str]:
    names = frozenset(n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip())
    if unknown := names - NAMES:
        raise ValueError(f"{ENV}: unknown fast paths {sorted(unknown)}")
    return names
