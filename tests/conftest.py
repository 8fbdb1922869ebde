"""Shared test setup: run from the project root so host.json and the function folders resolve, and
keep ``pytest -m "not integration"`` free of servers: every test in a folder whose tests start the
local stack or a simulator must carry the ``integration`` marker (collection fails otherwise)."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.chdir(ROOT)

# Tests in these folders start Azurite, a simulator, the identity endpoint or the local host.
SERVER_FOLDERS = ("tests/integration", "tests/devstack", "tests/bench")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if item.nodeid.startswith(SERVER_FOLDERS) and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests that need the local stack must be marked integration "
            "(pytestmark = pytest.mark.integration): " + ", ".join(unmarked[:5])
        )
