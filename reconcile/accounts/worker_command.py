"""``reconcile worker``: take connected accounts from the job queue; ``--progress``: show each."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from reconcile.config import Settings
from reconcile.errors import ConfigError, DatabaseUnavailable, ReconcileError

log = logging.getLogger(__name__)

_PROGRESS = text(
    """
    SELECT j.args->>'stripe_account' AS account, j.status, j.attempts,
           r.status AS run_status, r.exit_code, r.finished_at
      FROM procrastinate_jobs j
      LEFT JOIN LATERAL (
           SELECT status, exit_code, finished_at FROM runs
            WHERE runs.stripe_account = j.args->>'stripe_account'
            ORDER BY started_at DESC LIMIT 1) r ON TRUE
     WHERE j.task_name = :task
     ORDER BY j.id DESC
     LIMIT :limit
    """
)


def main(
    args: list[str],
    parser_class: type[argparse.ArgumentParser],
    fail: Callable[[ReconcileError, Settings], int],
) -> int:
    """Run ``reconcile worker`` with ``args``; return the exit code."""
    from reconcile.accounts import queue

    parser = parser_class(
        prog="reconcile worker",
        description="Take connected Stripe accounts from the PostgreSQL job queue, one at a "
        "time, until SIGTERM or SIGINT (the account in hand is finished first).",
    )
    parser.add_argument(
        "--stalled-after",
        type=float,
        default=queue.STALLED_AFTER_SECONDS,
        metavar="SECONDS",
        help="take up the account of a worker silent this long (default %(default)s)",
    )
    parser.add_argument(
        "--until-empty", action="store_true", help="stop once no account waits in the queue"
    )
    parser.add_argument("--name", help="this worker's name in logs and procrastinate's tables")
    parser.add_argument(
        "--progress", action="store_true", help="print each account's job and latest run; exit"
    )
    parser.add_argument("--limit", type=int, default=200, help="accounts --progress shows")
    namespace = parser.parse_args(args)
    if namespace.stalled_after <= 0:
        parser.error("--stalled-after must be positive")
    try:
        settings = Settings.from_env()
    except ReconcileError as error:
        return _failed(error)
    from reconcile.observability import configure_logging

    configure_logging(logging.INFO, settings.log_format, settings.secret_values())
    try:
        if namespace.progress:
            return _progress(settings, namespace.limit)
        queue.run_worker(
            settings,
            stalled_after=namespace.stalled_after,
            until_empty=namespace.until_empty,
            name=namespace.name,
        )
    except ReconcileError as error:
        return fail(error, settings)
    return 0


def _failed(error: ReconcileError) -> int:
    print(f"reconcile: error: {error}", file=sys.stderr)  # noqa: T201 - the command's own line
    return int(error.exit_code)


def _progress(settings: Settings, limit: int) -> int:
    from reconcile.accounts.queue import TASK
    from reconcile.db.engine import make_engine

    if not settings.database_url.startswith("postgresql"):
        raise ConfigError("the job queue lives on PostgreSQL; RECONCILE_DATABASE_URL is not")
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(_PROGRESS, {"task": TASK, "limit": limit}).all()
    except SQLAlchemyError:
        raise DatabaseUnavailable(
            "the job queue could not be read (has a run deferred any?)"
        ) from None
    finally:
        engine.dispose()
    print(f"{'account':<32} {'job':<10} {'attempts':>8}  {'latest run':<10} {'exit':>4}  finished")  # noqa: T201
    for account, status, attempts, run_status, exit_code, finished in rows:
        print(  # noqa: T201
            f"{account:<32} {status:<10} {attempts:>8}  {run_status or '-':<10} "
            f"{'-' if exit_code is None else exit_code:>4}  {finished or '-'}"
        )
    return 0
