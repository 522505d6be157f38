"""Write configmap-config.yaml from the repository's config.yaml (run after editing it).

    python deploy/k8s/sync_configmap.py            # rewrite the ConfigMap
    python deploy/k8s/sync_configmap.py --check    # exit 1 if it is out of date

Standard library only. tests/deploy checks the ConfigMap is up to date.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "config.yaml"
TARGET = HERE / "configmap-config.yaml"

HEADER = """\
# config.yaml (model routing, prices, plugin settings), mounted at WFG_CONFIG.
# GENERATED from the repository's config.yaml by deploy/k8s/sync_configmap.py; do not edit.
# To change the config in a cluster, check it, replace this ConfigMap, then restart
# (docs/operations.md, "Changing config.yaml"):
#
#   gateway-admin config check --config config.yaml
#   kubectl -n workforce-gateway create configmap workforce-gateway-config \\
#     --from-file=config.yaml --dry-run=client -o yaml | kubectl apply -f -
#   kubectl -n workforce-gateway rollout restart deployment/gateway deployment/portal
apiVersion: v1
kind: ConfigMap
metadata:
  name: workforce-gateway-config
  namespace: workforce-gateway
  labels:
    app.kubernetes.io/part-of: workforce-gateway
data:
  config.yaml: |
"""


def render(config_text: str) -> str:
    body = "".join(
        f"    {line}" if line.strip() else "\n"
        for line in config_text.rstrip("\n").splitlines(keepends=True)
    )
    return HEADER + body + "\n"


def main(argv: list[str]) -> int:
    wanted = render(SOURCE.read_text(encoding="utf-8"))
    if "--check" in argv:
        if TARGET.read_text(encoding="utf-8") != wanted:
            print(
                f"{TARGET} is out of date; run: python deploy/k8s/{Path(__file__).name}",
                file=sys.stderr,
            )
            return 1
        return 0
    TARGET.write_text(wanted, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
