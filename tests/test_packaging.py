"""A wheel of the project, installed outside the source tree, migrates a database on its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "reports"
)
MIGRATE = """
import sys
from importlib.resources import files

import reconcile
from sqlalchemy import inspect
from reconcile.db.engine import database_revision, known_revisions, make_engine, upgrade_to_head

engine = make_engine(sys.argv[1])
upgrade_to_head(engine)
print(reconcile.__file__)
print(database_revision(engine) == known_revisions()[0])
print(",".join(sorted(inspect(engine).get_table_names())))
print(files("reconcile.operator.console").joinpath("templates", "base.html").is_file())
"""


def _run(*args: str | Path, cwd: Path, **extra: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment.update(extra)
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(600)
def test_a_wheel_installed_outside_the_repository_migrates_an_empty_database(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCE)
    wheels = tmp_path / "wheels"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
        wheels,
        source,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("reconcile-*.whl")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fresh = elsewhere / "venv"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheel, cwd=elsewhere)
    # The dependencies come from this test's environment, after the fresh venv's own packages:
    # reconcile itself can only come from the wheel.
    fresh_site = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=elsewhere
        ).strip()
    )
    (fresh_site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    database = elsewhere / "snapshot.db"
    lines = _run(python, "-c", MIGRATE, f"sqlite:///{database}", cwd=elsewhere).splitlines()
    assert Path(lines[0]).is_relative_to(fresh_site)
    assert lines[1] == "True"
    assert {"alembic_version", "runs", "findings", "postings"} <= set(lines[2].split(","))
    assert lines[3] == "True"  # the review page's templates ship in the wheel

    shipped = _run(
        python,
        "-c",
        "from reconcile.fakes.stripe import TEMPLATES; print(*TEMPLATES)",
        cwd=elsewhere,
    )
    assert "payment_intent" in shipped.split(), "the fake Stripe's fixtures ship in the wheel"

    url = f"sqlite:///{database}"
    shown = _run(fresh / "bin" / "reconcile", "status", cwd=elsewhere, RECONCILE_DATABASE_URL=url)
    assert shown.startswith("No runs yet.")
