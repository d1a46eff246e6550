"""The simulation's seed (chosen once per session, printed with a replay command) and its soak.

The seed is ``RECONCILE_SIM_SEED``, else ``--hypothesis-seed``, else random: every CI run tries
new histories besides the hand-made ones. It is read when pytest starts, before the fixture that
scrubs ``RECONCILE_`` settings from the environment.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.simulation.coverage import BY_TEST

SEED_VARIABLE = "RECONCILE_SIM_SEED"
_SEED = pytest.StashKey[int]()
_DEADLINE = pytest.StashKey[float | None]()


def pytest_configure(config: pytest.Config) -> None:
    """Choose the session's simulation seed."""
    chosen = os.environ.get(SEED_VARIABLE) or config.getoption("hypothesis_seed", default=None)
    try:
        config.stash[_SEED] = int(chosen) if chosen else random.randrange(2**32)
    except ValueError:
        raise pytest.UsageError(f"{SEED_VARIABLE} must be a whole number, not {chosen!r}") from None


def simulation_seed(config: pytest.Config) -> int:
    """Return the session's simulation seed."""
    return config.stash[_SEED]


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the seed, a replay command and what the examples covered, pass or fail."""
    if not BY_TEST:
        return
    config = terminalreporter.config
    seed = config.stash[_SEED]
    soak = " --soak" if config.getoption("--soak") or config.getoption("--soak-minutes") else ""
    terminalreporter.section("simulation")
    terminalreporter.write_line(
        f"simulation seed {seed}: replay with "
        f"{SEED_VARIABLE}={seed} python -m pytest tests/simulation -p no:cacheprovider{soak}"
        + (" (a soak's later rounds: the seed + 1, + 2...)" if soak else "")
    )
    for test, counts in sorted(BY_TEST.items()):
        covered = ", ".join(f"{kind}: {count}" for kind, count in sorted(counts.items()))
        terminalreporter.write_line(f"{test}: {covered}")
