"""Fixtures live in tests/fixtures/, one module per kind of dependency."""

import os

# Before anything imports LiteLLM: never fetch its price map from the internet.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
# A developer's .env (read by every process started here) must not change what tests run.
os.environ["WFG_ENV_FILE"] = ""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.databases",
    "tests.fixtures.gateway",
]
