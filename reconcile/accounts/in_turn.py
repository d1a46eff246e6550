"""Reading connected accounts one after another in this process: SQLite's way, and the fallback.

Each account is its own run (:func:`reconcile.run.execute` with the account on the request): its
own lock, watermark, report and run row. One account failing does not stop the others; a stop
asked for (the scheduler's SIGTERM) ends the turn after the account in hand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from reconcile.accounts.listing import account_client
from reconcile.clients import Clients
from reconcile.config import Settings
from reconcile.errors import ReconcileError
from reconcile.request import RunOutcome, RunRequest
from reconcile.rules.accounts import named
from reconcile.run import execute

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountEnded:
    """How one connected account's run ended: what it did, or the error it failed with."""

    stripe_account: str
    ended: RunOutcome | ReconcileError

    @property
    def exit_code(self) -> int:
        """Return the exit code the account's run earned."""
        return int(self.ended.exit_code)


def run_in_turn(
    settings: Settings,
    request: RunRequest,
    clients: Clients,
    accounts: Sequence[str],
    *,
    on_ended: Callable[[AccountEnded], None] = lambda _ended: None,
    stopping: Callable[[], bool] = lambda: False,
) -> list[AccountEnded]:
    """Run ``request`` for each account in turn; the Moesif client (and its rate) is shared.

    Before each account ``stopping`` is asked; once it says so, the accounts left are not read
    this time (said in the log): nothing of theirs has begun, and the next run reads each from
    its own watermark.
    """
    results = []
    for number, account in enumerate(accounts, start=1):
        if stopping():
            left = accounts[number - 1 :]
            log.warning(
                "stopping: %d connected account(s) not read this time (%s); the next run reads "
                "each from its own watermark",
                len(left),
                named(left),
            )
            break
        log.info("account %s (%d of %d)", account, number, len(accounts))
        scoped = replace(clients, stripe=account_client(settings, account))
        try:
            ended: RunOutcome | ReconcileError = execute(
                settings, replace(request, stripe_account=account), scoped
            )
        except ReconcileError as error:
            ended = error
        result = AccountEnded(account, ended)
        on_ended(result)
        results.append(result)
    return results
