"""The simulation's soak: each test's time budget, and no per-test time limit while soaking.

The session's seed and the coverage summary are tests/simulation/session.py's.
"""

from __future__ import annotations

import time

import pytest

_DEADLINE = pytest.StashKey[float | None]()


def soak_deadline(config: pytest.Config) -> float | None:
    """Return the monotonic time the running test's soak stops at (``None``: no time budget)."""
    return config.stash.get(_DEADLINE, None)


@pytest.fixture(autouse=True)
def _soak_budget(request: pytest.FixtureRequest) -> None:
    """Give each simulation test its own ``--soak-minutes`` from its start."""
    minutes = request.config.getoption("--soak-minutes")
    request.config.stash[_DEADLINE] = time.monotonic() + minutes * 60 if minutes else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Lift the per-test timeout from the simulation's tests when soaking."""
    if not (config.getoption("--soak") or config.getoption("--soak-minutes")):
        return
    for item in items:
        if "tests/simulation/" in item.nodeid:
            item.add_marker(pytest.mark.timeout(0))
