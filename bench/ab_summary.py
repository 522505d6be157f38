"""Summarise an A/B of our gateway's variants (`gateway_overhead --fast-paths-off …
--json FILE`, one or more files): per backend and mode, each variant's CPU ms per
answered call (median over rounds, and the rest of the machine's median beside it) and
its difference from the variant with nothing off.

On a shared machine a phase's CPU per call rises with the rest of the machine's load, so
the difference is also given adjusted for it: CPU = variant + slope × rest, one slope per
backend and mode fitted over every phase (least squares within each variant), read at
the median rest. Run an A/A beside (`--fast-paths-off ' '`: nothing off under another
name) to see what difference noise alone makes.

    .venv/bin/python -m bench.ab_summary /tmp/ab1.json /tmp/ab2.json
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ALL_ON = "(nothing off)"


def variant_of(target: str) -> tuple[str, str]:
    backend = "SQLite" if "SQLite" in target else "PostgreSQL + Redis"
    if "[off: " not in target:
        return backend, ALL_ON
    off = target.split("[off: ", 1)[1].rstrip("]")
    return backend, off if off.strip() else "(nothing off, A/A)"


def summary(paths: list[Path]) -> list[str]:
    phases = [p for path in paths for p in json.loads(path.read_text())["phases"]]
    groups: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for p in phases:
        backend, variant = variant_of(p["target"])
        rest = 1000 * p["rest_of_machine_cpu_seconds"] / max(p["answered"], 1)
        groups[(backend, p["mode"])][variant].append((p["cpu_ms_per_request"], rest))
    lines = []
    for (backend, mode), variants in sorted(groups.items()):
        numerator = denominator = 0.0
        for rows in variants.values():
            mean_cpu = statistics.fmean(c for c, _ in rows)
            mean_rest = statistics.fmean(r for _, r in rows)
            numerator += sum((r - mean_rest) * (c - mean_cpu) for c, r in rows)
            denominator += sum((r - mean_rest) ** 2 for _, r in rows)
        slope = numerator / denominator if denominator else 0.0
        middle = statistics.median(r for rows in variants.values() for _, r in rows)
        lines.append(
            f"{backend}, {mode}: slope {slope:.3f} ms per ms of rest, read at rest {middle:.1f}"
        )
        base_median = base_adjusted = None
        for variant in sorted(variants, key=lambda v: (v != ALL_ON, v)):
            rows = variants[variant]
            median = statistics.median(c for c, _ in rows)
            adjusted = statistics.fmean(c - slope * (r - middle) for c, r in rows)
            if base_median is None or base_adjusted is None:
                base_median, base_adjusted = median, adjusted
            lines.append(
                f"  {variant:28} rounds {len(rows):2}  CPU ms/call median {median:5.2f}"
                f" ({100 * (median / base_median - 1):+4.0f}%)"
                f"  rest median {statistics.median(r for _, r in rows):5.1f}"
                f"  adjusted {adjusted:5.2f} ({100 * (adjusted / base_adjusted - 1):+4.0f}%)"
            )
    return lines


if __name__ == "__main__":
    print("\n".join(summary([Path(arg) for arg in sys.argv[1:]])))
