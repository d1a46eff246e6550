"""The commands the demo prints work in a new shell, without an activated environment."""

from __future__ import annotations

from pathlib import Path

from reconcile.demo import reconcile_command


def test_an_interpreter_below_the_working_directory_is_named_relative_to_it() -> None:
    command = reconcile_command("/home/u/reconcile/.venv/bin/python", Path("/home/u/reconcile"))
    assert command == ".venv/bin/python -m reconcile"


def test_an_interpreter_elsewhere_is_named_by_its_absolute_path() -> None:
    command = reconcile_command("/opt/py/bin/python3", Path("/home/u/reconcile"))
    assert command == "/opt/py/bin/python3 -m reconcile"


def test_odd_paths_stay_one_shell_word() -> None:
    assert reconcile_command("/w/python", Path("/w")) == "./python -m reconcile"
    assert (
        reconcile_command("/my dir/bin/python", Path("/w")) == "'/my dir/bin/python' -m reconcile"
    )
