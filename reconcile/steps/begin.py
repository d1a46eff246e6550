"""Beginning a run: its window and spans, a writable report directory, its row; and its failure."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from reconcile.config import Settings
from reconcile.db import runs
from reconcile.domain.times import Window, to_iso
from reconcile.errors import ConfigError, ReconcileError
from reconcile.redaction import NO_SECRETS, Redactor
from reconcile.request import RunRequest, new_run_id
from reconcile.rules.window import Spans, run_spans, run_window
from reconcile.steps import Sessions

log = logging.getLogger(__name__)


def check_report_dir(report_dir: Path) -> None:
    """Refuse to start, before anything is posted, when the report cannot be written."""
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=report_dir, prefix=".probe-"):
            pass
    except OSError as error:
        raise ConfigError(
            f"the report directory {report_dir} cannot be written: {error.strerror or error}"
        ) from None


@dataclass(frozen=True)
class Begun:
    """A run that has begun: its id, its spans and where its report goes."""

    run_id: str
    started_at: datetime
    spans: Spans
    report_dir: Path
    stripe_account: str | None = None
    """The connected account the run reads; ``None``: the key's own."""


def begin(
    sessions: Sessions,
    settings: Settings,
    request: RunRequest,
    started_at: datetime,
    clock: Callable[[], datetime],
) -> Begun:
    """Choose the run's window, check its report directory and record it as running.

    Raises:
        UsageError: no window can be found (see ``rules.window``).
        ConfigError: the report directory cannot be written.
    """
    run_id = new_run_id(started_at)
    report_dir = request.report_dir or settings.report_dir
    chosen = window(
        sessions,
        request.since,
        request.until,
        started_at,
        settings.lookback,
        stripe_account=request.stripe_account,
        first_since=request.first_since,
    )
    check_report_dir(report_dir)
    start(sessions, run_id, chosen, request, started_at)
    spans = run_spans(chosen, settings.match_window, clock())
    return Begun(run_id, started_at, spans, report_dir, request.stripe_account)


def window(
    sessions: Sessions,
    since: datetime | None,
    until: datetime | None,
    started_at: datetime,
    lookback: timedelta,
    *,
    stripe_account: str | None = None,
    first_since: datetime | None = None,
) -> Window:
    """Return the run's window, from the request or from the account's last watermark."""
    with sessions() as session:
        watermark = runs.last_watermark(session, stripe_account) if since is None else None
        pending = runs.last_pending_since(session, stripe_account) if since is None else None
    chosen = run_window(
        since=since,
        until=until,
        started_at=started_at,
        watermark=watermark,
        lookback=lookback,
        pending_since=pending,
        first_since=first_since,
    )
    if since is None and watermark is not None and chosen.since < watermark - lookback:
        log.info(
            "reading from %s: a Stripe payment or refund seen then was not final yet",
            to_iso(chosen.since),
        )
    return chosen


def start(
    sessions: Sessions, run_id: str, window: Window, request: RunRequest, started_at: datetime
) -> None:
    """Mark runs that died mid-run as crashed, then record this one as running."""
    with sessions.begin() as session:
        crashed = runs.mark_crashed(session, started_at, request.stripe_account)
        if crashed:
            log.warning("%d earlier run(s) ended mid-run; their postings are checked", crashed)
        runs.record_start(
            session,
            run_id,
            since=window.since,
            until=window.until,
            dry_run=request.dry_run,
            companies=request.companies,
            trigger=request.trigger,
            started_at=started_at,
            stripe_account=request.stripe_account,
        )
    log.info(
        "run %s%s: %s to %s%s",
        run_id,
        f" of {request.stripe_account}" if request.stripe_account else "",
        to_iso(window.since),
        to_iso(window.until),
        " (dry run)" if request.dry_run else "",
    )


def fail(
    sessions: Sessions,
    run_id: str,
    error: ReconcileError,
    finished_at: datetime,
    redactor: Redactor = NO_SECRETS,
) -> None:
    """Record that the run failed, its message masked; a database failing now is only logged."""
    try:
        with sessions.begin() as session:
            message = redactor.message(error)
            runs.record_failure(session, run_id, int(error.exit_code), finished_at, message)
    except SQLAlchemyError:
        log.exception("could not record the failure of run %s", run_id)
