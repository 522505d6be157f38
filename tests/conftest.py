"""Fixtures live in tests/fixtures/, one module per kind of dependency."""

import os

# Before anything imports LiteLLM: never fetch its price map from the internet.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.databases",
    "tests.fixtures.gateway",
]
