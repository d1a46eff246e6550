"""Ending a run: its report and findings saved, its row concluded, its outcome told."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from reconcile import frames, report
from reconcile.db import runs
from reconcile.db.findings import store_findings
from reconcile.redaction import NO_SECRETS, Redactor
from reconcile.request import RunOutcome
from reconcile.rules.conclusion import Conclusion, Tally
from reconcile.steps import Sessions
from reconcile.times import Window


def save(
    sessions: Sessions,
    findings: pd.DataFrame,
    run_id: str,
    report_dir: Path,
    redactor: Redactor = NO_SECRETS,
) -> Path:
    """Write the report and store the findings of the run, secrets masked; return its path."""
    findings = frames.redacted(findings, redactor.text)
    path = report.write_report(findings, run_id, report_dir)
    with sessions.begin() as session:
        store_findings(session, run_id, findings)
        runs.record_report(session, run_id, str(path), len(findings))
    return path


def finish(
    sessions: Sessions,
    done: RunOutcome,
    conclusion: Conclusion,
    review: int,
    pending_since: datetime | None,
) -> RunOutcome:
    """Record how the run concluded, and return what it did."""
    with sessions.begin() as session:
        runs.record_conclusion(
            session,
            done.run_id,
            status=conclusion.status,
            exit_code=int(conclusion.exit_code),
            finished_at=done.finished_at,
            flagged=review,
            posted=done.posted,
            post_failed=done.post_failed,
            error=done.message or None,
            pending_since=pending_since,
            watermark=conclusion.watermark,
        )
    return done


def outcome(
    run_id: str,
    findings: pd.DataFrame,
    window: Window,
    started_at: datetime,
    finished_at: datetime,
    conclusion: Conclusion,
    counted: Tally,
    report_path: Path,
    message: str,
    *,
    dry_run: bool,
) -> RunOutcome:
    """Return what the run did, with its terminal summary."""
    return RunOutcome(
        run_id=run_id,
        exit_code=conclusion.exit_code,
        window=window,
        started_at=started_at,
        finished_at=finished_at,
        counts=frames.counts(findings),
        totals=frames.totals(findings),
        posted=counted.posted,
        post_failed=counted.post_failed,
        report_path=report_path,
        message=message,
        summary=report.summary(
            findings,
            posted=counted.posted,
            post_failed=counted.post_failed,
            report_path=report_path,
            window=window,
            dry_run=dry_run,
        ),
    )
