"""Fixtures live in tests/fixtures/, one module per kind of dependency."""

import os
import sys
import tempfile
from pathlib import Path

# Bytecode. With PYTHONDONTWRITEBYTECODE set (as on the reference machine) this process
# and each of the ~25 Python processes the suite starts (gateways, portals,
# `gateway-admin`) would compile LiteLLM's ~2,900 modules again: ~3.5 s of CPU each. The
# suite keeps one bytecode cache of its own instead, outside the source tree; Python
# checks each cached file against its source, so an edit is never run stale.
if sys.dont_write_bytecode and not sys.pycache_prefix:
    sys.pycache_prefix = str(Path(tempfile.gettempdir()) / f"wfg-test-bytecode-{os.getuid()}")
    sys.dont_write_bytecode = False
    os.environ["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# Before anything imports LiteLLM: LiteLLM's variables as the gateway's process sets them
# (its price map never fetched from the internet, and so on).
from gateway_plugins.server import prepare_environment

prepare_environment()
# A developer's .env (read by every process started here) must not change what tests run.
os.environ["WFG_ENV_FILE"] = ""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.databases",
    "tests.fixtures.gateway",
    "tests.fixtures.clocked_gateway",
    "tests.fixtures.passwords",
    "tests.fixtures.litellm_clients",
]


def pytest_xdist_make_scheduler(config, log):  # type: ignore[no-untyped-def]
    """Under pytest-xdist (`make test` runs two workers): `tests.scheduling` keeps each
    database backend's tests on one worker and every other module whole."""
    from tests.scheduling import BackendOrModuleScheduling

    return BackendOrModuleScheduling(config, log)
