from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session

from reconcile.cli import main
from reconcile.db.engine import alembic_config, known_revisions, make_engine
from reconcile.db.models import Finding, Run
from reconcile.operator.status import schema_problem, status_report

NIGHT = datetime(2026, 11, 1, 2, tzinfo=UTC)


def _run(run_id: str, day: int, status: str, exit_code: int | None, **fields: object) -> Run:
    started = NIGHT + timedelta(days=day)
    values: dict[str, object] = {
        "id": run_id,
        "since": started - timedelta(days=3),
        "until": started,
        "trigger": "scheduler",
        "status": status,
        "exit_code": exit_code,
        "started_at": started,
        "finished_at": None if status == "running" else started + timedelta(seconds=61.5),
        "report_path": f"reports/drift-{run_id}.csv",
    }
    values.update(fields)
    return Run(**values)


def _finding(run_id: str, category: str, action: str, n: int, **fields: object) -> Finding:
    values: dict[str, object] = {
        "run_id": run_id,
        "category": category,
        "action": action,
        "company_id": f"co_{n}",
        "subscription_id": f"sub_{n}",
        "transaction_id": f"pi_{n}",
        "entry_type": "credit",
        "currency": "usd",
        "stripe_amount_minor": 1050,
        "moesif_amount_minor": 1000,
    }
    values.update(fields)
    return Finding(**values)


def _seed(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(
            [
                _run("r1-old", 0, "succeeded", 1, stripe_entries=10, ledger_rows=9, findings=2),
                _run("r2-good", 1, "succeeded", 1, findings=7, flagged=6, posted=1, post_failed=1),
                _run("r3-dry", 2, "succeeded", 1, dry_run=True),
                _run("r4-failed", 3, "failed", 3, report_path=None),
                _run("r5-now", 4, "running", None, trigger="manual", report_path=None),
            ]
        )
        session.flush()
        session.add_all(
            [_finding("r1-old", "missing_in_stripe", "flagged", 99)]
            + [_finding("r2-good", "amount_mismatch", "flagged", n) for n in range(5)]
            + [
                _finding("r2-good", "missing_in_moesif", "post_failed", 7, detail="HTTP 503"),
                _finding("r2-good", "missing_in_moesif", "posted", 8),
                _finding("r2-good", "matched_by_amount", "none", 9),
                _finding("r3-dry", "missing_in_stripe", "flagged", 10),
            ]
        )


def test_lists_runs_newest_first_with_window_status_counts_and_duration(engine: Engine) -> None:
    _seed(engine)
    report = status_report(engine, limit=4)
    lines = report.splitlines()
    assert lines[0] == "Last 4 runs, newest first:"
    assert lines[1].split()[:2] == ["RUN", "WINDOW"]
    ids = [line.split()[0] for line in lines[2:6]]
    assert ids == ["r5-now", "r4-failed", "r3-dry", "r2-good"]
    good = lines[5].split()
    assert good[1] == "2026-10-30T02:00:00Z..2026-11-02T02:00:00Z"
    assert good[2:] == [
        "scheduler",
        "succeeded",
        "1",
        "0",
        "0",
        "7",
        "6",
        "1",
        "1",
        "61.5s",
        "reports/drift-r2-good.csv",
    ]
    assert lines[2].split()[2:5] == ["manual", "running", "-"]
    assert "scheduler dry-run" in lines[4]
    assert "r1-old" not in "\n".join(lines[:7])


def test_open_findings_come_from_the_latest_successful_full_run(engine: Engine) -> None:
    _seed(engine)
    report = status_report(engine)
    section = report.split("\n\n")[1]
    assert section.startswith("Open findings of run r2-good (the latest successful full run")
    assert "  amount_mismatch (flagged): 5" in section
    assert "    - co_0/sub_0 pi_0 credit stripe 10.50 USD moesif 10.00 USD" in section
    assert section.count("    - co_") == 4  # three amount examples and one failed posting
    assert "… and 2 more in reports/drift-r2-good.csv" in section
    assert "  missing_in_moesif (post_failed): 1" in section
    assert "pi_7 credit stripe 10.50 USD moesif 10.00 USD: HTTP 503" in section
    assert "matched_by_amount" not in section
    assert "(posted)" not in section
    assert "missing_in_stripe" not in section  # only in the older run and the dry run


def test_empty_history(engine: Engine) -> None:
    assert status_report(engine) == ("No runs yet.\n\nOpen findings: no successful full run yet.\n")


def test_a_clean_latest_run_has_no_open_findings_and_reading_changes_nothing(
    engine: Engine,
) -> None:
    with Session(engine) as session, session.begin():
        session.add(_run("r-clean", 0, "succeeded", 0, companies=None))
        session.add(_run("r-partial", 1, "succeeded", 1, companies="co_1"))
        session.flush()
        session.add(_finding("r-partial", "amount_mismatch", "flagged", 1))
    report = status_report(engine)
    assert "Open findings of run r-clean" in report
    assert report.endswith("  none.\n")
    assert "scheduler companies=co_1" in report
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 2


# -- the command: it only reads ------------------------------------------------------------------


def _status(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setenv("RECONCILE_DATABASE_URL", url)
    code = main(["status"])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_of_a_mistyped_sqlite_path_is_one_line_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "snapshto.db"
    code, out, err = _status(f"sqlite:///{typo}", monkeypatch, capsys)
    assert code == 2
    assert out == ""
    assert err == f"reconcile: error: no snapshot database at {typo} (RECONCILE_DATABASE_URL)\n"
    assert not typo.exists()


def test_status_of_a_database_without_schema_is_one_line_and_migrates_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:  # an existing, empty database (SQLite: the file)
            connection.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)")
        code, out, err = _status(database_url, monkeypatch, capsys)
        assert code == 2
        assert out == ""
        assert err.startswith("reconcile: error: the snapshot database ")
        assert err.endswith(" has no reconcile schema (a `reconcile run` creates it)\n")
        assert err.count("\n") == 1
        assert set(inspect(engine).get_table_names()) == {"unrelated"}
    finally:
        engine.dispose()


def test_status_of_a_database_behind_head_says_so_and_does_not_migrate(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    command.upgrade(alembic_config(sqlite_url), "0001")
    head, _ = known_revisions()
    code, out, err = _status(sqlite_url, monkeypatch, capsys)
    assert code == 2
    assert out == ""
    assert err.endswith(
        f" is at revision 0001, behind {head} (the next `reconcile run` migrates it)\n"
    )
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
                ("0001",)
            ]
    finally:
        engine.dispose()


def test_status_of_a_migrated_database_prints_the_report(
    engine: Engine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _seed(engine)
    code, out, err = _status(database_url, monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert out.startswith("Last 5 runs, newest first:")


def test_schema_problem() -> None:
    known = {"0001", "0002"}
    assert schema_problem("0002", "0002", known) is None
    assert schema_problem(None, "0002", known) == (
        "has no reconcile schema (a `reconcile run` creates it)"
    )
    assert schema_problem("0001", "0002", known) == (
        "is at revision 0001, behind 0002 (the next `reconcile run` migrates it)"
    )
    assert schema_problem("0099", "0002", known) == (
        "is at revision 0099, which this version of reconcile does not know"
    )
