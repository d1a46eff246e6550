"""A pytest plugin for the mutation check: writes each test's outcome to ``$MUTATION_OUTCOMES``.

Loaded with ``-p tests.mutations.outcomes`` in the runs the check starts; one line per test
phase, ``<outcome> <node id>``, so the check can tell which named tests failed.
"""

from __future__ import annotations

import os

import pytest

ENV = "MUTATION_OUTCOMES"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Append the outcome of one phase of one test (failed setup counts as failed)."""
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{report.outcome} {report.nodeid}\n")
