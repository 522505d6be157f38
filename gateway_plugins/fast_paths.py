"""The hand-written fast paths the gateway can take past its libraries, and the switch
that turns them off for an A/B (`bench/README.md`): `WFG_FAST_PATHS_OFF`, a
comma-separated list of names, read once at start.

- `inline_sqlite`: SQLite on `portal.db.sqlite_inline` instead of aiosqlite;
- `driver`: the per-call money statements sent by the raw driver (`portal.db.driver`)
  instead of SQLAlchemy Core on a pooled connection;
- `kept_connections`: driver connections kept out of SQLAlchemy's pool between calls;
- `redis_scripts`: the limiter's Lua scripts on kept Redis connections instead of
  redis-py's client and pool.
"""

from __future__ import annotations

import os

__all__ = ["ENV", "NAMES", "turned_off"]

ENV = "WFG_FAST_PATHS_OFF"
NAMES = frozenset({"inline_sqlite", "driver", "kept_connections", "redis_scripts"})


def turned_off() -> frozenset[str]:
    names = frozenset(n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip())
    if unknown := names - NAMES:
        raise ValueError(f"{ENV}: unknown fast paths {sorted(unknown)}")
    return names
