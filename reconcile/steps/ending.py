"""Ending a run: its report and findings saved, its row concluded, its outcome told."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd

from reconcile import frames, report
from reconcile.config import Settings
from reconcile.db import runs
from reconcile.db.findings import store_findings
from reconcile.domain.times import Window
from reconcile.redaction import NO_SECRETS, Redactor
from reconcile.request import RunOutcome, RunRequest
from reconcile.rules.conclusion import Conclusion, Tally, conclude, to_review, unanswered
from reconcile.steps import Posted, Sessions
from reconcile.steps.begin import Begun


def end(
    sessions: Sessions,
    settings: Settings,
    request: RunRequest,
    run: Begun,
    findings: pd.DataFrame,
    posted: Posted,
    pending_since: datetime | None,
    clock: Callable[[], datetime],
) -> RunOutcome:
    """Save the report and findings, conclude the run and record it; return what it did.

    Findings an operator ignored do not count for review (``findings`` has them settled); open
    ones of earlier runs do, and so do resolved ones whose drift is still there (reopened).
    """
    path = save(
        sessions,
        findings,
        run.run_id,
        run.report_dir,
        settings.redactor(),
        stripe_account=run.stripe_account,
    )
    review = to_review(frames.actions(findings))
    conclusion = conclude(
        review=review,
        tally=posted.counted,
        guardrail=bool(posted.guardrail),
        partial=request.dry_run or bool(request.companies),
        window_until=run.spans.window.until,
        started_at=run.started_at,
    )
    done = outcome(
        run.run_id,
        findings,
        run.spans.window,
        run.started_at,
        clock(),
        conclusion,
        posted.counted,
        path,
        posted.guardrail or unanswered(posted.counted),
        dry_run=request.dry_run,
    )
    return finish(sessions, done, conclusion, review, pending_since)


def save(
    sessions: Sessions,
    findings: pd.DataFrame,
    run_id: str,
    report_dir: Path,
    redactor: Redactor = NO_SECRETS,
    *,
    stripe_account: str | None = None,
) -> Path:
    """Write the report and store the findings of the run, secrets masked; return its path."""
    findings = frames.redacted(findings, redactor)
    path = report.write_report(findings, run_id, report_dir, stripe_account=stripe_account)
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
