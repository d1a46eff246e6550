"""What follows a run, for every caller alike: its summary logged, its metrics, its notification."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from reconcile.announce import announce
from reconcile.config import Settings
from reconcile.errors import ReconcileError
from reconcile.metrics import write_metrics
from reconcile.observability import log_summary
from reconcile.request import RunOutcome


def after_run(
    settings: Settings,
    ended: RunOutcome | ReconcileError,
    logger: logging.Logger,
    clock: Callable[[], datetime],
    *,
    began: datetime,
) -> int:
    """Log a run that ended, write its metrics, announce it; return the exit code it earns.

    A run that failed (``ended`` is the error) writes metrics with its exit code and how long
    it took, and is announced under the run row it recorded as failed, if any.

    Args:
        settings: where the metrics file and the notification go.
        ended: what the run did, or the error it failed with.
        logger: the caller's logger, for the summary of a run that ended.
        clock: the current time.
        began: when the caller started the run.
    """
    outcome = ended if isinstance(ended, RunOutcome) else None
    if outcome is not None:
        log_summary(logger, outcome)
    if settings.metrics_file is not None:
        write_metrics(
            settings.metrics_file,
            outcome,
            failed_exit_code=int(ended.exit_code),
            now=clock(),
            started_at=began,
        )
    announce(settings, ended, clock, began=began)
    return int(ended.exit_code)
