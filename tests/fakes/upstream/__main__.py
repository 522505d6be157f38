"""Run standalone: ``python -m tests.fakes.upstream`` prints the env as JSON."""

from __future__ import annotations

import contextlib
import json
import threading

from .server import FakeUpstream


def main() -> None:  # pragma: no cover - manual use
    upstream = FakeUpstream().start()
    print(json.dumps(upstream.env(), indent=2), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    upstream.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
