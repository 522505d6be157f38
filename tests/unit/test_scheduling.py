"""`tests/scheduling.py`: which worker group a test belongs to under pytest-xdist."""

from __future__ import annotations

import pytest

from tests.scheduling import group_of


@pytest.mark.parametrize(
    ("nodeid", "group"),
    [
        ("tests/a/test_x.py::test_y[sqlite]", "sqlite"),
        ("tests/a/test_x.py::test_y[postgresql]", "postgresql"),
        ("tests/a/test_x.py::test_y[api_base-chat-postgresql]", "postgresql"),
        ("tests/a/test_x.py::Suite::test_y[sqlite-stream]", "sqlite"),
        ("tests/a/test_x.py::test_y", "tests/a/test_x.py"),
        ("tests/a/test_x.py::test_y[memory]", "tests/a/test_x.py"),
        ("tests/a/test_x.py::test_y[sqlite_file]", "tests/a/test_x.py"),
        ("tests/a/test_x.py::test_postgresql_redis", "tests/a/test_x.py"),
    ],
)
def test_a_backends_tests_share_a_group_and_the_rest_stay_with_their_module(
    nodeid: str, group: str
) -> None:
    assert group_of(nodeid) == group
