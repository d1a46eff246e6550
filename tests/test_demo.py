"""The commands the demo prints work in a new shell, without an activated environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.demo import main, reconcile_command


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


def test_the_demo_tops_up_through_serve_and_the_nightly_run_posts_nothing_for_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--report-dir", str(tmp_path / "reports")]) == 0
    shown = capsys.readouterr().out
    command = reconcile_command()
    assert f"$ {command} --since " in shown
    assert f"$ {command} serve --port " in shown
    assert '200 {"payment_intent_id":"pi_' in shown
    assert "Stripe delivered payment_intent.succeeded twice: answered 200, 200" in shown
    assert "Moesif holds the top-up 1 time(s): credit 42.00 on sub_wayne" in shown
    assert "posted 0 (the top-up was credited once)" in shown
    assert shown.index("second run") < shown.index("/top-up") < shown.index("nightly run")
