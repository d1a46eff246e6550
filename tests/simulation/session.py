"""The simulation's session: one seed for the run, and what the examples covered at its end.

Registered by tests/conftest.py, so it is loaded by pytest and by each pytest-xdist worker. The
seed is ``RECONCILE_SIM_SEED``, else ``--hypothesis-seed``, else random: every CI run tries new
histories besides the hand-made ones. It is read when pytest starts, before the fixture that
scrubs ``RECONCILE_`` settings from the environment. Under ``pytest -n`` the controller chooses
it and hands it to every worker, and each worker hands back its tests' coverage counts, so the
summary prints one seed (that replays every worker's examples) and every test's counts.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any

import pytest

from tests.simulation.coverage import BY_TEST

SEED_VARIABLE = "RECONCILE_SIM_SEED"
_SEED = pytest.StashKey[int]()
_WORKER_SEED = "reconcile_simulation_seed"
_WORKER_COVERAGE = "reconcile_simulation_coverage"


def pytest_configure(config: pytest.Config) -> None:
    """Choose the session's simulation seed (a worker takes its controller's)."""
    handed: dict[str, Any] | None = getattr(config, "workerinput", None)
    if handed is not None and _WORKER_SEED in handed:
        config.stash[_SEED] = int(handed[_WORKER_SEED])
        return
    chosen = os.environ.get(SEED_VARIABLE) or config.getoption("hypothesis_seed", default=None)
    try:
        config.stash[_SEED] = int(chosen) if chosen else random.randrange(2**32)
    except ValueError:
        raise pytest.UsageError(f"{SEED_VARIABLE} must be a whole number, not {chosen!r}") from None


def simulation_seed(config: pytest.Config) -> int:
    """Return the session's simulation seed."""
    return config.stash[_SEED]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Hand the controller's seed to a pytest-xdist worker."""
    node.workerinput[_WORKER_SEED] = node.config.stash[_SEED]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: hand its tests' coverage counts back to the controller."""
    output: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[_WORKER_COVERAGE] = {test: dict(counts) for test, counts in BY_TEST.items()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Add a finished pytest-xdist worker's coverage counts to the session's."""
    handed: dict[str, dict[str, int]] = getattr(node, "workeroutput", {}).get(_WORKER_COVERAGE, {})
    for test, counts in handed.items():
        BY_TEST.setdefault(test, Counter()).update(counts)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the seed, a replay command and what the examples covered, pass or fail."""
    if not BY_TEST:
        return
    config = terminalreporter.config
    seed = config.stash[_SEED]
    soaking = config.getoption("--soak", default=False) or config.getoption(
        "--soak-minutes", default=None
    )
    soak = " --soak" if soaking else ""
    terminalreporter.section("simulation")
    terminalreporter.write_line(
        f"simulation seed {seed}: replay with "
        f"{SEED_VARIABLE}={seed} python -m pytest tests/simulation -p no:cacheprovider{soak}"
        + (" (a soak's later rounds: the seed + 1, + 2...)" if soak else "")
    )
    for test, counts in sorted(BY_TEST.items()):
        covered = ", ".join(f"{kind}: {count}" for kind, count in sorted(counts.items()))
        terminalreporter.write_line(f"{test}: {covered}")
