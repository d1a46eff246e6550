from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from reconcile.db.models import Finding, Run
from reconcile.status import status_report

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
