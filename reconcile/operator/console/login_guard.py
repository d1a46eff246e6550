"""The review page's login attempts, kept in this process and asked before a token is checked.

The decision is :func:`reconcile.rules.login_limit.attempt`; this holds its record between
requests, one record for the page, behind a lock.
"""

from __future__ import annotations

import threading
from datetime import datetime

from reconcile.rules.login_limit import (
    DEFAULT_BUDGET,
    Attempts,
    LoginBudget,
    Verdict,
    attempt,
    forget,
)


class LoginGuard:
    """Counts login attempts per client and overall; refuses those past the budget."""

    def __init__(self, budget: LoginBudget = DEFAULT_BUDGET) -> None:
        """Allow ``budget`` attempts."""
        self.budget = budget
        self._attempts = Attempts()
        self._lock = threading.Lock()

    def attempt(self, client: str, now: datetime) -> Verdict:
        """Return whether ``client`` may try now, recording the attempt when it may."""
        with self._lock:
            verdict = attempt(self._attempts, client, now, self.budget)
            self._attempts = verdict.attempts
        return verdict

    def signed_in(self, client: str) -> None:
        """Forget ``client``'s attempts after it signed in."""
        with self._lock:
            self._attempts = forget(self._attempts, client)
