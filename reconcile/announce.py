"""Announcing a finished or failed run through ``RECONCILE_NOTIFY_URL``; never changes its exit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from reconcile.config import Settings
from reconcile.db.engine import make_engine
from reconcile.db.runs import latest_failed_since
from reconcile.errors import ReconcileError
from reconcile.operator.notify import notify_run
from reconcile.request import RunOutcome
from reconcile.tls import tls_context

log = logging.getLogger(__name__)

NOTIFY_TIMEOUT_SECONDS = 10.0
"""How long one notification POST may take."""


def announce(
    settings: Settings,
    result: RunOutcome | ReconcileError,
    clock: Callable[[], datetime],
    *,
    began: datetime,
    http: httpx.Client | None = None,
) -> None:
    """Store and deliver the notification of a run that ended (``RunOutcome``) or failed.

    A failed run is announced under the id of the run row it recorded as failed at or after
    ``began``; a failure before any run row was written (the lock, the configuration)
    announces nothing. Problems are warnings only.
    """
    if settings.notify_url is None:
        return
    engine = make_engine(settings.database_url)
    client = http or httpx.Client(verify=tls_context(), timeout=NOTIFY_TIMEOUT_SECONDS)
    try:
        sessions = sessionmaker(engine, expire_on_commit=False)
        if isinstance(result, RunOutcome):
            notify_run(
                sessions,
                client,
                settings.notify_url,
                run_id=result.run_id,
                exit_code=int(result.exit_code),
                report_path=result.report_path,
                clock=clock,
                console_url=settings.console_url,
            )
            return
        with sessions() as session:
            failed = latest_failed_since(session, began)
        if failed is None:
            return
        notify_run(
            sessions,
            client,
            settings.notify_url,
            run_id=failed.id,
            exit_code=int(result.exit_code),
            report_path=failed.report_path,
            clock=clock,
            error=failed.error or settings.redactor().message(result),
            console_url=settings.console_url,
        )
    except SQLAlchemyError as problem:
        log.warning("notification not sent: the database failed (%s)", type(problem).__name__)
    finally:
        if http is None:
            client.close()
        engine.dispose()
