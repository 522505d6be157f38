"""A durable spool for settlements the database did not take.

LiteLLM swallows exceptions raised in success callbacks, so if the database is briefly
unreachable the debit would be lost. Instead the gateway appends the call's metadata
(never content) as one JSON line to a file under `var/spool/`, fsyncs it, and replays
the spool later; settlement is idempotent by call id, so a replay never double-debits.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from portal.usage.settlement import FinishedCall

__all__ = ["Spool"]

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def _path(self) -> Path:
        return self.directory / f"usage-{os.getpid()}.jsonl"

    def append(self, call: FinishedCall) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(call.to_json(), separators=(",", ":")) + "\n"
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def pending(self) -> int:
        return sum(1 for path in self._files() for line in path.open() if line.strip())

    async def replay(self, settle: Callable[[FinishedCall], Awaitable[object]]) -> int:
        """Settle every spooled call; a file is removed only once all its lines settled.

        Returns how many calls were replayed. Stops at the first failure (still down)."""
        replayed = 0
        for path in self._files():
            claimed = path.with_suffix(".replaying")
            try:
                path.rename(claimed)  # claim it, so two replayers never share a file
            except FileNotFoundError:
                continue
            lines = [line for line in claimed.read_text(encoding="utf-8").splitlines() if line]
            for index, line in enumerate(lines):
                try:
                    await settle(FinishedCall.from_json(json.loads(line)))
                except Exception:
                    log.warning("usage spool replay paused: database still unavailable")
                    claimed.write_text("\n".join(lines[index:]) + "\n", encoding="utf-8")
                    # a fresh name: this worker may have spooled to `path` meanwhile
                    claimed.rename(path.with_name(f"usage-retry-{uuid.uuid4().hex}.jsonl"))
                    return replayed
                replayed += 1
            claimed.unlink()
        return replayed

    def _files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("usage-*.jsonl"))
