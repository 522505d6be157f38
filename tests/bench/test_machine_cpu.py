"""The bench reads the whole machine's CPU around each phase, so a phase measured while
something else was burning CPU (or while the hypervisor took the vCPUs away) says so."""

from __future__ import annotations

import resource
import subprocess
import sys

from bench.gateway_overhead import machine_cpu

SPIN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def _children_cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def test_the_machines_busy_cpu_includes_another_process_burning_cpu() -> None:
    children_before, before = _children_cpu(), machine_cpu()
    subprocess.run([sys.executable, "-c", SPIN], check=True)
    after = machine_cpu()
    spun = _children_cpu() - children_before  # the spinner's CPU, by its own account

    assert spun >= 0.3
    assert after.busy - before.busy >= spun - 0.05  # clock ticks round each side
    assert after.steal >= before.steal >= 0
