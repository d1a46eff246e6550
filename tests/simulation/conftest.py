"""The soak run of the simulation has no per-test time limit."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Lift the per-test timeout from the simulation's tests when ``--soak`` is given."""
    if not config.getoption("--soak"):
        return
    for item in items:
        if "tests/simulation/" in item.nodeid:
            item.add_marker(pytest.mark.timeout(0))
