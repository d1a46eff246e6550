"""The job queue that spreads connected accounts over ``reconcile worker`` processes (section 12).

procrastinate keeps its jobs in the snapshot's own PostgreSQL: a run over many accounts defers
one job per account (``queueing_lock``: never two waiting for one account) and workers on any
machine take them. A job is one account's run (:func:`reconcile.run.execute`): its own lock,
watermark and report. A failure a rerun resumes (Stripe, Moesif or the database unavailable,
the account's lock held by a run still finishing) is retried with backoff; a worker killed
mid-account leaves its job ``doing`` under a worker whose heartbeat stops, and every live worker
puts such stalled jobs back in the queue, where another takes them up and the exactly-once
engine finishes the account. SIGTERM or SIGINT stops a worker cleanly: it takes no new job and
finishes the account it is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import procrastinate
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from reconcile.accounts.listing import account_client
from reconcile.after_run import after_run
from reconcile.clients import open_clients, utc_now
from reconcile.config import Settings
from reconcile.db import runs
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.domain.times import to_iso
from reconcile.errors import ConfigError, DatabaseUnavailable, LockHeld, ReconcileError, RunFailed
from reconcile.lock import advisory_key
from reconcile.request import RunRequest
from reconcile.rules.accounts import named, worst_exit
from reconcile.run import execute

log = logging.getLogger(__name__)

TASK = "reconcile.stripe_account"
"""The task's name in ``procrastinate_jobs.task_name``."""

QUEUE = "stripe_accounts"
"""The queue connected accounts wait in."""

MAX_ATTEMPTS = 5
"""Attempts of one account's job before it is left ``failed`` (its run row says why)."""

STALLED_AFTER_SECONDS = 30.0
"""A worker silent this long is taken for dead, and its account is taken up again."""


class AccountRetry(Exception):
    """An account's run failed in a way a rerun resumes; procrastinate retries the job."""


def conninfo(database_url: str) -> str:
    """Return libpq's form of the snapshot's SQLAlchemy URL (``postgresql+psycopg://`` → …)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def make_app(database_url: str, *, retry_wait: int = 2) -> procrastinate.App:
    """Return the procrastinate app on the snapshot's PostgreSQL, with the account task."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=conninfo(database_url))
    )
    app.task(
        name=TASK,
        queue=QUEUE,
        retry=procrastinate.RetryStrategy(
            max_attempts=MAX_ATTEMPTS - 1,
            exponential_wait=retry_wait,
            retry_exceptions={AccountRetry},
        ),
    )(reconcile_account)
    return app


def ensure_schema(engine: Engine, app: procrastinate.App) -> None:
    """Create procrastinate's tables in the snapshot database once, whoever comes first."""
    with engine.begin() as connection:
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key("procrastinate")}
        )
        if connection.scalar(text("SELECT to_regclass('procrastinate_jobs')")) is None:
            # psycopg's own execute, without parameters: the schema's text holds literal "%".
            driver = connection.connection.driver_connection
            driver.execute(app.schema_manager.get_schema())  # type: ignore[union-attr]


def reconcile_account(
    stripe_account: str,
    since: str | None,
    until: str | None,
    dry_run: bool,
    report_dir: str | None,
    companies: list[str] | None = None,
    first_since: str | None = None,
) -> int:
    """Run one connected account's reconciliation; return its exit code.

    ``first_since``: with ``since=None``, where an account with no watermark yet starts.

    Raises:
        AccountRetry: the run failed in a way a rerun resumes (exit 3 or 75).
    """
    settings = Settings.from_env()
    request = RunRequest(
        since=datetime.fromisoformat(since) if since else None,
        until=datetime.fromisoformat(until) if until else None,
        dry_run=dry_run,
        companies=tuple(companies or ()),
        report_dir=Path(report_dir) if report_dir else None,
        trigger="worker",
        stripe_account=stripe_account,
        first_since=datetime.fromisoformat(first_since) if first_since else None,
    )
    began = utc_now()
    try:
        with open_clients(settings) as clients:
            scoped = replace(clients, stripe=account_client(settings, stripe_account))
            outcome = execute(settings, request, scoped)
    except (RunFailed, LockHeld, DatabaseUnavailable) as error:
        after_run(settings, error, log, utc_now, began=began)
        raise AccountRetry(settings.redactor().message(error)) from None
    except ReconcileError as error:
        log.error("account %s: %s", stripe_account, settings.redactor().message(error))
        return after_run(settings, error, log, utc_now, began=began)
    return after_run(settings, outcome, log, utc_now, began=began)


def defer_accounts(
    app: procrastinate.App, request: RunRequest, accounts: Sequence[str], until: datetime
) -> dict[str, int | None]:
    """Defer one job per account; return each account's job id (``None``: one already waits)."""
    task = app.tasks[TASK]
    deferred: dict[str, int | None] = {}
    for account in accounts:
        try:
            deferred[account] = task.configure(queueing_lock=f"account:{account}").defer(
                stripe_account=account,
                since=to_iso(request.since) if request.since else None,
                until=to_iso(request.until or until),
                dry_run=request.dry_run,
                report_dir=str(request.report_dir) if request.report_dir else None,
                companies=list(request.companies),
                # Only when set: a job without it is one an older worker still takes.
                **({"first_since": to_iso(request.first_since)} if request.first_since else {}),
            )
        except procrastinate.exceptions.AlreadyEnqueued:
            deferred[account] = None
    return deferred


async def _retry_stalled(app: procrastinate.App, stalled_after: float) -> None:
    """Put back the jobs of workers silent for ``stalled_after`` seconds, again and again."""
    while True:
        for job in await app.job_manager.get_stalled_jobs(
            queue=QUEUE, seconds_since_heartbeat=stalled_after
        ):
            log.warning("account job %s was left by a stopped worker; queued again", job.id)
            await app.job_manager.retry_job(job)
        await asyncio.sleep(max(0.2, stalled_after / 3))


async def _work(app: procrastinate.App, options: dict[str, Any], stalled_after: float) -> None:
    async with app.open_async():
        watcher = asyncio.create_task(_retry_stalled(app, stalled_after))
        try:
            await app.run_worker_async(**options)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def run_worker(
    settings: Settings,
    *,
    stalled_after: float = STALLED_AFTER_SECONDS,
    until_empty: bool = False,
    name: str | None = None,
) -> None:
    """Take account jobs until stopped (SIGTERM, SIGINT), or until none wait (``until_empty``).

    Raises:
        ConfigError: the snapshot database is not PostgreSQL.
    """
    if not settings.database_url.startswith("postgresql"):
        raise ConfigError(
            "reconcile worker needs RECONCILE_DATABASE_URL on PostgreSQL; on SQLite a run "
            "reads its accounts in turn"
        )
    engine = make_engine(settings.database_url)
    app = make_app(settings.database_url)
    try:
        upgrade_to_head(engine)
        ensure_schema(engine, app)
    finally:
        engine.dispose()
    options: dict[str, Any] = {
        "queues": [QUEUE],
        "concurrency": 1,
        "wait": not until_empty,
        "update_heartbeat_interval": max(0.2, stalled_after / 4),
        "stalled_worker_timeout": stalled_after,
        "delete_jobs": "never",
        "install_signal_handlers": True,
        **({"name": name} if name else {}),
    }
    asyncio.run(_work(app, options, stalled_after))


def job_states(engine: Engine, job_ids: Sequence[int]) -> dict[int, tuple[str, int]]:
    """Return each job's status and attempts, from procrastinate's own table."""
    if not job_ids:
        return {}
    query = text("SELECT id, status, attempts FROM procrastinate_jobs WHERE id = ANY(:ids)")
    with engine.connect() as connection:
        return {
            row[0]: (str(row[1]), int(row[2]))
            for row in connection.execute(query, {"ids": list(job_ids)})
        }


FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "aborted"})
"""A job in one of these states will not run again."""


def defer_and_wait(
    settings: Settings,
    request: RunRequest,
    accounts: Sequence[str],
    *,
    emit: Callable[[str], None],
    poll_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    stopping: Callable[[], bool] = lambda: False,
) -> int:
    """Defer one job per account, wait for the workers to finish them; return the worst exit.

    Once ``stopping`` says so the wait ends: the accounts not finished stay queued for the
    workers, and the exit is the worst of those finished.

    Raises:
        DatabaseUnavailable: the database or the queue in it could not be reached.
    """
    engine = make_engine(settings.database_url)
    app = make_app(settings.database_url)
    started = utc_now()
    try:
        upgrade_to_head(engine)
        ensure_schema(engine, app)
        with app.open():
            deferred = defer_accounts(app, request, accounts, started)
        waiting = {account: job for account, job in deferred.items() if job is not None}
        emit(_deferred_line(len(waiting), len(deferred) - len(waiting)))
        ended = _wait(engine, waiting, emit, poll_seconds, sleep, stopping)
        return worst_exit(account_exits(engine, ended, started).values())
    except (SQLAlchemyError, procrastinate.exceptions.ConnectorException) as error:
        raise DatabaseUnavailable(
            f"the job queue could not be reached: {type(error).__name__}"
        ) from None
    finally:
        engine.dispose()


def _deferred_line(deferred: int, already: int) -> str:
    queued = f"; {already} already waiting there" if already else ""
    return (
        f"deferred {deferred} account(s) to the queue {QUEUE!r}{queued}; `reconcile worker` "
        "processes take them (`reconcile worker --progress` shows each)"
    )


def _wait(
    engine: Engine,
    waiting: Mapping[str, int],
    emit: Callable[[str], None],
    poll_seconds: float,
    sleep: Callable[[float], None],
    stopping: Callable[[], bool],
) -> list[str]:
    """Return the accounts whose jobs ended, once all have or ``stopping`` says so.

    Each is told as it ends; when the wait is stopped, so are the accounts left in the queue.
    """
    done: set[str] = set()
    while True:
        states = job_states(engine, list(waiting.values()))
        for account, job in waiting.items():
            status = states.get(job, ("gone", 0))[0]
            if account not in done and (status in FINAL_STATES or status == "gone"):
                done.add(account)
                emit(f"{account}: job {job} {status}")
        if len(done) == len(waiting):
            return list(waiting)
        if stopping():
            left = [account for account in waiting if account not in done]
            emit(
                f"stopped waiting: {len(left)} account(s) still queued or in hand ({named(left)}); "
                "the workers finish them"
            )
            return [account for account in waiting if account in done]
        sleep(poll_seconds)


def account_exits(engine: Engine, accounts: Sequence[str], since: datetime) -> dict[str, int]:
    """Return each account's exit code: its latest run's since ``since`` (3 when it has none)."""
    with Session(engine) as session:
        found = runs.latest_exit_codes(session, accounts, since)
    return {
        account: 3 if found.get(account) is None else int(found[account] or 0)
        for account in accounts
    }
