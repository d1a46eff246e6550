"""The mutation check as a test: ``python -m pytest -m mutations`` (deselected otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutations.check import ROOT, Verdict, check_one, copy_repository, judge, run
from tests.mutations.mutants import MUTANTS, Mutant


@pytest.mark.mutations
@pytest.mark.timeout(900)
def test_every_fault_makes_its_named_tests_fail() -> None:
    results = run()

    lines = [f"{r.verdict} {r.name}: {r.reason}" for r in results]
    assert results[0].verdict is Verdict.PASSED, lines
    assert [r.verdict for r in results[1:]] == [Verdict.KILLED] * len(MUTANTS), lines


def test_mutant_names_are_unique_and_each_names_tests() -> None:
    names = [mutant.name for mutant in MUTANTS]

    assert len(names) == len(set(names))
    assert all(mutant.tests and mutant.find != mutant.replace for mutant in MUTANTS)


def test_a_snippet_not_found_exactly_once_is_a_broken_check_not_a_kill() -> None:
    moved = Mutant(
        "moved", "nothing", "reconcile/domain/money.py", "no such code\n", "", ("tests/x.py",)
    )

    result = check_one(ROOT, moved, ())

    assert result.verdict is Verdict.BROKEN
    assert "occurs 0 times" in result.reason


@pytest.mark.parametrize(
    ("code", "outcomes", "verdict"),
    [
        (1, {"t.py::a[sqlite]": "failed", "t.py::b": "failed"}, Verdict.KILLED),
        (1, {"t.py::a[sqlite]": "failed", "t.py::b": "passed"}, Verdict.SURVIVED),
        (0, {"t.py::a[sqlite]": "passed", "t.py::b": "passed"}, Verdict.SURVIVED),
        (2, {"t.py::a[sqlite]": "failed", "t.py::b": "failed"}, Verdict.BROKEN),
        (1, {"t.py::a[sqlite]": "failed"}, Verdict.BROKEN),
    ],
    ids=["all-fail", "one-misses", "all-pass", "usage-error", "one-not-run"],
)
def test_a_mutant_is_killed_only_when_every_named_test_fails(
    code: int, outcomes: dict[str, str], verdict: Verdict
) -> None:
    assert judge(["t.py::a", "t.py::b"], code, outcomes, mutated=True).verdict is verdict


def test_a_red_baseline_is_a_broken_check() -> None:
    outcomes = {"t.py::a": "passed", "t.py::b": "failed"}

    assert judge(["t.py::a", "t.py::b"], 1, outcomes, mutated=False).verdict is Verdict.BROKEN
    assert judge(["t.py::a"], 0, {"t.py::a": "passed"}, mutated=False).verdict is Verdict.PASSED


def test_a_named_test_that_skips_unmutated_is_a_broken_check() -> None:
    outcomes = {"t.py::a[sqlite]": "passed", "t.py::a[postgresql]": "skipped"}

    assert judge(["t.py::a"], 0, outcomes, mutated=False).verdict is Verdict.BROKEN


def test_a_copy_without_git_keeps_links_and_leaves_virtual_environments_out(
    tmp_path: Path,
) -> None:
    source, copy = tmp_path / "source", tmp_path / "copy"
    (source / "alembic").mkdir(parents=True)
    (source / "alembic" / "env.py").write_text("migrations")
    (source / "reconcile").mkdir()
    (source / "reconcile" / "_migrations").symlink_to("../alembic")
    (source / ".ci" / "venv" / "lib").mkdir(parents=True)
    (source / ".ci" / "venv" / "lib" / "big.py").write_text("installed")
    (source / ".ci" / "check").write_text("ci")
    copy.mkdir()

    copy_repository(source, copy)

    assert (copy / "reconcile" / "_migrations").is_symlink()
    assert (copy / "reconcile" / "_migrations" / "env.py").read_text() == "migrations"
    assert (copy / ".ci" / "check").exists()
    assert not (copy / ".ci" / "venv").exists()


def test_the_readme_lists_every_mutant_with_its_named_tests() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {line.split("`")[1]: line for line in readme.splitlines() if line.startswith("| `")}

    for mutant in MUTANTS:
        assert mutant.name in rows, mutant.name
        for test in mutant.tests:
            assert f"`{test.removeprefix('tests/')}`" in rows[mutant.name], test
