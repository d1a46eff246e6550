"""Under pytest-xdist the simulation keeps one seed and reports every worker's coverage."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_TESTS = """
from collections import Counter

import pytest

from tests.simulation.coverage import BY_TEST
from tests.simulation.session import simulation_seed


@pytest.mark.parametrize("n", range(6))
def test_counts(request, worker_id, tmp_path_factory, n):
    seeds = tmp_path_factory.getbasetemp().parent / "seeds"
    seeds.mkdir(exist_ok=True)
    (seeds / f"{worker_id}-{n}").write_text(str(simulation_seed(request.config)))
    BY_TEST.setdefault(f"test-{n}", Counter())["kind"] += n + 1
"""


def test_workers_share_the_controllers_seed_and_hand_back_their_coverage(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_many=_TESTS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

    result = pytester.runpytest_subprocess(
        "-p", "tests.simulation.session", "-p", "xdist", "-n", "2", "-p", "no:cacheprovider"
    )

    result.assert_outcomes(passed=6)
    summary = result.stdout.str()
    seed = re.search(r"simulation seed (\d+): replay with RECONCILE_SIM_SEED=\1 ", summary)
    assert seed, summary
    written = {path.name: path.read_text() for path in pytester.path.rglob("seeds/*")}
    assert {name.split("-")[0] for name in written} == {"gw0", "gw1"}, written
    assert set(written.values()) == {seed.group(1)}, (written, seed.group(1))
    for n in range(6):
        result.stdout.fnmatch_lines([f"test-{n}: kind: {n + 1}"])
