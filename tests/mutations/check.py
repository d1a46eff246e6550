"""Run the mutation check: each mutant in a copy of the repository, its named tests against it.

For each mutant of :data:`tests.mutations.mutants.MUTANTS`: copy the repository's files (those
git tracks or would track) to a temporary directory, replace the mutant's snippet (it must occur
exactly once), and run its named tests there in a fresh interpreter, with that copy first on the
import path (tests that start processes run the mutant too). The mutant is *killed* when pytest
exits 1 and every named test has a failing case; it *survived* when they pass; anything else
(a snippet not found, a test id that collects nothing, a crash) is a broken check. The named
tests are first run once on the unmutated copy and must all pass: a red baseline kills nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tests.mutations.mutants import MUTANTS, Mutant
from tests.mutations.outcomes import ENV

ROOT = Path(__file__).resolve().parents[2]
"""The repository the check copies."""

TIMEOUT_SECONDS = 300
"""How long one mutant's tests may run before the check calls it broken."""

_SKIPPED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "build",
    "dist",
}
"""Folders a copy made without git leaves out (``.ci/venv`` among them)."""


_WORST_FIRST = ("passed", "skipped", "failed")
"""A test's outcome is the worst of its phases' (setup, call, teardown)."""


class Verdict(StrEnum):
    """What became of one run of named tests."""

    KILLED = "killed"
    SURVIVED = "survived"
    BROKEN = "broken"
    PASSED = "passed"
    """The baseline: every named test passed unmutated."""


@dataclass(frozen=True)
class Result:
    """One mutant's (or the baseline's) outcome, with a one-line reason and its run time."""

    name: str
    verdict: Verdict
    reason: str
    seconds: float


def tracked_files(root: Path) -> list[str]:
    """The repository's files, relative: git's tracked and not-ignored ones, else a walk."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return _walk(root)
    return [
        name
        for name in listed.decode().split("\0")
        if name and ((root / name).is_file() or (root / name).is_symlink())
    ]


def _walk(root: Path) -> list[str]:
    """Every file and symbolic link under ``root``, relative, outside :data:`_SKIPPED_DIRS`."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        links = [name for name in dirs if (here / name).is_symlink()]
        dirs[:] = [name for name in dirs if name not in _SKIPPED_DIRS and name not in links]
        for name in [*files, *links]:
            found.append(str((here / name).relative_to(root)))
    return sorted(found)


def copy_repository(root: Path, into: Path) -> None:
    """Copy the repository's files from ``root`` into the empty directory ``into``.

    A symbolic link is copied as the link (``reconcile/_migrations`` points at ``alembic/``).
    """
    for name in tracked_files(root):
        source, target = root / name, into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)


def apply(mutant: Mutant, tree: Path) -> None:
    """Switch the mutant's fault on in ``tree``.

    Raises:
        ValueError: the snippet does not occur exactly once (the table is out of date).
    """
    path = tree / mutant.path
    source = path.read_text(encoding="utf-8")
    found = source.count(mutant.find)
    if found != 1:
        raise ValueError(
            f"{mutant.name}: its snippet occurs {found} times in {mutant.path}, not once; "
            "update tests/mutations/mutants.py"
        )
    path.write_text(source.replace(mutant.find, mutant.replace), encoding="utf-8")


def run_tests(tree: Path, tests: Sequence[str]) -> tuple[int, dict[str, str], str]:
    """Run ``tests`` in ``tree``; return pytest's exit code, outcomes by node id, and its output.

    An outcome is ``failed`` when any phase of the test failed, else ``skipped`` when one
    skipped, else ``passed``.
    """
    outcomes_file = tree / ".mutation-outcomes"
    outcomes_file.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env[ENV] = str(outcomes_file)
    command = [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider"]
    command += ["-p", "tests.mutations.outcomes"]
    done = subprocess.run(
        command,
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    outcomes: dict[str, str] = {}
    if outcomes_file.exists():
        for line in outcomes_file.read_text(encoding="utf-8").splitlines():
            outcome, nodeid = line.split(" ", 1)
            earlier = outcomes.get(nodeid, "passed")
            outcomes[nodeid] = max(earlier, outcome, key=_WORST_FIRST.index)
    return done.returncode, outcomes, done.stdout + done.stderr


def cases_of(named: str, outcomes: dict[str, str]) -> dict[str, str]:
    """The outcomes of the cases a named test id stands for (itself, or its parametrisations)."""
    return {
        nodeid: outcome
        for nodeid, outcome in outcomes.items()
        if nodeid == named or (nodeid.startswith(named + "[") and "[" not in named)
    }


def judge(tests: Sequence[str], code: int, outcomes: dict[str, str], *, mutated: bool) -> Result:
    """Judge one run of ``tests``: killed, survived or broken (mutated), passed or broken."""
    name = ""
    empty = [named for named in tests if not cases_of(named, outcomes)]
    if empty or code not in (0, 1):
        why = f"pytest exited {code}" + (f"; ran nothing for {', '.join(empty)}" if empty else "")
        return Result(name, Verdict.BROKEN, why, 0.0)
    failing = [named for named in tests if "failed" in cases_of(named, outcomes).values()]
    if not mutated:
        if failing or code != 0:
            return Result(name, Verdict.BROKEN, f"fails unmutated: {', '.join(failing)}", 0.0)
        skipped = [nodeid for nodeid, outcome in outcomes.items() if outcome != "passed"]
        if skipped:
            why = f"skips unmutated, so it checks nothing: {', '.join(skipped)}"
            return Result(name, Verdict.BROKEN, why, 0.0)
        return Result(name, Verdict.PASSED, f"{len(outcomes)} cases pass unmutated", 0.0)
    if code == 0 or not failing:
        return Result(name, Verdict.SURVIVED, "every named test passes with the fault", 0.0)
    passing = [named for named in tests if named not in failing]
    if passing:
        return Result(
            name, Verdict.SURVIVED, f"these named tests miss it: {', '.join(passing)}", 0.0
        )
    return Result(name, Verdict.KILLED, f"{len(failing)} of {len(tests)} named tests fail", 0.0)


def check_one(root: Path, mutant: Mutant | None, tests: Sequence[str]) -> Result:
    """Copy ``root``, switch ``mutant`` on (``None``: the baseline), run ``tests``, judge."""
    started = time.monotonic()
    name = mutant.name if mutant else "(baseline)"
    with tempfile.TemporaryDirectory(prefix="reconcile-mutant-") as temp:
        tree = Path(temp)
        copy_repository(root, tree)
        try:
            if mutant is not None:
                apply(mutant, tree)
            code, outcomes, output = run_tests(tree, tests)
        except ValueError as error:
            return Result(name, Verdict.BROKEN, str(error), time.monotonic() - started)
        except subprocess.TimeoutExpired:
            why = f"its tests ran over {TIMEOUT_SECONDS} s"
            return Result(name, Verdict.BROKEN, why, time.monotonic() - started)
    result = judge(tests, code, outcomes, mutated=mutant is not None)
    if result.verdict is Verdict.BROKEN:
        sys.stderr.write(output[-4000:])
    return Result(name, result.verdict, result.reason, time.monotonic() - started)


def run(mutants: Iterable[Mutant] = MUTANTS, root: Path = ROOT) -> list[Result]:
    """Run the baseline, then every mutant in turn; return their results, baseline first."""
    chosen = list(mutants)
    everything = list(dict.fromkeys(test for mutant in chosen for test in mutant.tests))
    results = [check_one(root, None, everything)]
    if results[0].verdict is not Verdict.PASSED:
        return results
    results += [check_one(root, mutant, mutant.tests) for mutant in chosen]
    return results


def expected(result: Result) -> bool:
    """Whether a result is what the check wants: the baseline passes, each mutant is killed."""
    return result.verdict in (Verdict.PASSED, Verdict.KILLED)


def main(argv: Sequence[str] = ()) -> int:
    """Run the check (or only the mutants named in ``argv``); print one line each; 0 if all held.

    Exit codes: 0 every mutant killed, 1 a mutant survived or the check is broken, 2 an unknown
    mutant named.
    """
    known = {mutant.name: mutant for mutant in MUTANTS}
    unknown = [name for name in argv if name not in known]
    if unknown:
        sys.stdout.write(f"unknown mutant(s): {', '.join(unknown)}; known: {', '.join(known)}\n")
        return 2
    started = time.monotonic()
    results = run([known[name] for name in argv] if argv else MUTANTS)
    for result in results:
        line = f"{result.verdict:<8} {result.name:<26} {result.seconds:5.1f}s  {result.reason}"
        sys.stdout.write(line + "\n")
    sys.stdout.write(f"{len(results) - 1} mutant(s) in {time.monotonic() - started:.0f} s\n")
    return 0 if all(expected(result) for result in results) else 1
