"""A run over many connected accounts, as the command line asks for it (section 12).

On PostgreSQL one job per account goes to the queue for ``reconcile worker`` processes, and the
command waits for them; on SQLite the accounts are read in turn in this process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from reconcile.accounts.in_turn import AccountEnded, run_in_turn
from reconcile.accounts.listing import accounts_to_read
from reconcile.after_run import after_run
from reconcile.clients import open_clients, utc_now
from reconcile.config import Settings
from reconcile.errors import ReconcileError, RunFailed
from reconcile.request import RunRequest
from reconcile.rules.accounts import worst_exit

log = logging.getLogger(__name__)


def run_accounts(
    settings: Settings,
    request: RunRequest,
    asked: Sequence[str],
    *,
    emit: Callable[[str], None],
    fail: Callable[[ReconcileError, Settings], int],
    stopping: Callable[[], bool] = lambda: False,
) -> int:
    """Reconcile each connected account ``asked`` names; return the most serious exit code.

    ``stopping`` (the scheduler's shutdown) ends the run early: no further account is read in
    turn, or, on PostgreSQL, the wait for the workers ends and the accounts stay queued for them.
    """
    try:
        accounts = accounts_to_read(settings, tuple(asked))
    except ReconcileError as error:
        return fail(error, settings)
    if not accounts:
        emit("no connected accounts to reconcile")
        return 0
    if settings.database_url.startswith("postgresql"):
        from reconcile.accounts.queue import defer_and_wait

        try:
            return defer_and_wait(settings, request, accounts, emit=emit, stopping=stopping)
        except ReconcileError as error:
            return fail(error, settings)
        except KeyboardInterrupt:
            left = RunFailed("interrupted while waiting; the accounts stay queued for the workers")
            return fail(left, settings)
    began = utc_now()

    def told(ended: AccountEnded) -> None:
        if isinstance(ended.ended, ReconcileError):
            emit(f"{ended.stripe_account}: failed (exit {ended.exit_code})")
            fail(ended.ended, settings)
        else:
            emit(f"{ended.stripe_account}:\n{ended.ended.summary}")
        after_run(settings, ended.ended, log, utc_now, began=began)

    try:
        with open_clients(settings) as clients:
            results = run_in_turn(
                settings, request, clients, accounts, on_ended=told, stopping=stopping
            )
    except ReconcileError as error:
        return fail(error, settings)
    return worst_exit(result.exit_code for result in results)
