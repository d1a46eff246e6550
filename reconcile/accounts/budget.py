"""Moesif's 500 requests a minute as one budget for every worker and ``serve`` (section 12).

On PostgreSQL the batch limiter and the live limiter count in the database
(:mod:`reconcile.db.moesif_budget`) instead of in the process: the batch side (every worker and
run together) stops at ``RECONCILE_MOESIF_REQUESTS_PER_MINUTE``, the live path at Moesif's 500,
so the live path always has what the batch share leaves. On SQLite (one process) the
in-process limiters of :mod:`reconcile.clients` stay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from reconcile.db import moesif_budget
from reconcile.db.engine import describe
from reconcile.errors import DatabaseUnavailable
from reconcile.retry import RateLimiter

log = logging.getLogger(__name__)

MIN_WAIT = 0.05
"""The shortest wait for the next minute, so a clock at its edge never spins."""


class SharedBudget(RateLimiter):
    """A :class:`RateLimiter` whose count lives in PostgreSQL, shared by every process."""

    def __init__(
        self, engine: Engine, limit: int, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        """Spend at most ``limit`` requests per calendar minute on ``engine``'s database."""
        super().__init__(limit, 60.0, sleep=sleep)
        self._engine = engine

    def acquire(self) -> None:
        """Wait until this minute (or a later one) has a request left, then spend it.

        Raises:
            DatabaseUnavailable: the budget could not be read.
        """
        while True:
            try:
                with self._engine.connect() as connection:
                    if moesif_budget.spend(connection, self.limit):
                        connection.commit()
                        return
                    connection.commit()
                    wait = moesif_budget.seconds_to_next_minute(connection)
            except SQLAlchemyError as error:
                raise DatabaseUnavailable(
                    f"the shared Moesif budget could not be read: {describe(error)}"
                ) from None
            log.debug("Moesif's budget of %d this minute is spent; waiting %.1fs", self.limit, wait)
            self._sleep(max(MIN_WAIT, wait))


def shares_budget(database_url: str) -> bool:
    """Return whether processes on this database share one Moesif budget (PostgreSQL)."""
    return database_url.startswith("postgresql")
