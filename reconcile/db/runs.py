"""Queries on the runs table: a run's row from start to end, the run history, the watermark."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from reconcile.db.models import Run
from reconcile.domain.vocab import RunStatus


def _of_account(stripe_account: str | None) -> ColumnElement[bool]:
    """Return the condition for runs of one Stripe account (``None``: the key's own)."""
    if stripe_account is None:
        return Run.stripe_account.is_(None)
    return Run.stripe_account == stripe_account


def last_watermark(session: Session, stripe_account: str | None = None) -> datetime | None:
    """Return where the account's last successful full run ended, if any run did."""
    return session.scalar(select(func.max(Run.watermark)).where(_of_account(stripe_account)))


def last_pending_since(session: Session, stripe_account: str | None = None) -> datetime | None:
    """Return the oldest still-pending Stripe movement the account's last full run saw."""
    mine = _of_account(stripe_account)
    latest = select(func.max(Run.watermark)).where(mine).scalar_subquery()
    return session.scalar(select(Run.pending_since).where(mine, Run.watermark == latest).limit(1))


def mark_crashed(session: Session, now: datetime, stripe_account: str | None = None) -> int:
    """Mark the account's runs left ``running`` by a process that died; hold its lock."""
    result = session.execute(
        update(Run)
        .where(Run.status == RunStatus.RUNNING, _of_account(stripe_account))
        .values(status=RunStatus.CRASHED, finished_at=now, error="the process ended mid-run")
    )
    return int(getattr(result, "rowcount", 0) or 0)


def record_start(
    session: Session,
    run_id: str,
    *,
    since: datetime,
    until: datetime,
    dry_run: bool,
    companies: Sequence[str],
    trigger: str,
    started_at: datetime,
    stripe_account: str | None = None,
) -> None:
    """Record a run as running from ``started_at`` over ``[since, until)``; no flush."""
    session.add(
        Run(
            id=run_id,
            since=since,
            until=until,
            dry_run=dry_run,
            companies=",".join(companies) or None,
            trigger=trigger,
            status=RunStatus.RUNNING,
            started_at=started_at,
            stripe_account=stripe_account,
        )
    )


def record_failure(
    session: Session, run_id: str, exit_code: int, finished_at: datetime, error: str
) -> None:
    """Record that a run failed, with its exit code and message; nothing when it has no row."""
    row = session.get(Run, run_id)
    if row is None:
        return
    row.status = RunStatus.FAILED
    row.exit_code = exit_code
    row.finished_at = finished_at
    row.error = error


def record_stripe_entries(session: Session, run_id: str, count: int) -> None:
    """Record how many Stripe movements a run stored."""
    session.get_one(Run, run_id).stripe_entries = count


def record_ledger_rows(session: Session, run_id: str, count: int) -> None:
    """Record how many Moesif ledger rows a run read."""
    session.get_one(Run, run_id).ledger_rows = count


def record_report(session: Session, run_id: str, report_path: str, findings: int) -> None:
    """Record where a run's report is and how many findings it holds."""
    row = session.get_one(Run, run_id)
    row.report_path = report_path
    row.findings = findings


def record_conclusion(
    session: Session,
    run_id: str,
    *,
    status: str,
    exit_code: int,
    finished_at: datetime,
    flagged: int,
    posted: int,
    post_failed: int,
    error: str | None,
    pending_since: datetime | None,
    watermark: datetime | None,
) -> None:
    """Record how a run concluded; its watermark moves only when ``watermark`` is given."""
    row = session.get_one(Run, run_id)
    row.status = status
    row.exit_code = exit_code
    row.finished_at = finished_at
    row.flagged = flagged
    row.posted = posted
    row.post_failed = post_failed
    row.error = error
    row.pending_since = pending_since
    if watermark is not None:
        row.watermark = watermark


def recent_runs(session: Session, limit: int) -> list[Run]:
    """Return the latest ``limit`` runs, newest first."""
    return list(session.scalars(select(Run).order_by(Run.started_at.desc()).limit(limit)))


def latest_full_run(session: Session) -> Run | None:
    """Return the newest run that succeeded over every company and was not a dry run."""
    query = (
        select(Run)
        .where(Run.status == RunStatus.SUCCEEDED, Run.dry_run.is_(False), Run.companies.is_(None))
        .order_by(Run.started_at.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def latest_failed_since(session: Session, began: datetime) -> Run | None:
    """Return the newest run recorded as failed that started at or after ``began``."""
    return session.scalars(
        select(Run)
        .where(Run.status == RunStatus.FAILED, Run.started_at >= began)
        .order_by(Run.started_at.desc())
        .limit(1)
    ).first()


def run_of(session: Session, run_id: str) -> Run | None:
    """Return the run with this id, if there is one."""
    return session.get(Run, run_id)


def latest_exit_codes(
    session: Session, accounts: Sequence[str], since: datetime
) -> dict[str, int | None]:
    """Return the exit code of each account's latest run started at or after ``since``."""
    query = (
        select(Run.stripe_account, Run.exit_code)
        .where(Run.stripe_account.in_(list(accounts)), Run.started_at >= since)
        .order_by(Run.started_at)
    )
    return {str(account): code for account, code in session.execute(query)}
