"""Container health probe: `wfg-healthcheck gateway|portal [/healthz|/readyz]`.

The slim image has no curl; this asks the service on loopback, on the port the service
itself reads from the environment (GATEWAY_PORT / PORTAL_PORT), and exits 0 on HTTP 200.
Standard library only, so it works whatever is installed in the virtualenv.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

PORTS = {"gateway": ("GATEWAY_PORT", "4000"), "portal": ("PORTAL_PORT", "8080")}


def main(argv: list[str]) -> int:
    service = argv[1] if len(argv) > 1 else "gateway"
    path = argv[2] if len(argv) > 2 else "/healthz"
    if service not in PORTS or not path.startswith("/"):
        print("usage: wfg-healthcheck gateway|portal [/healthz|/readyz]", file=sys.stderr)
        return 2
    variable, default = PORTS[service]
    url = f"http://127.0.0.1:{os.environ.get(variable) or default}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
