"""Building the outside clients, the posting engine, a clock and a sleep, in one place."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import stripe
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from reconcile.accounts.budget import SharedBudget, shares_budget
from reconcile.config import MOESIF_BUDGET_LIMIT, Settings
from reconcile.moesif.client import MoesifClient, open_http_client
from reconcile.posting.engine import PostingEngine
from reconcile.posting.first_read import FirstRead
from reconcile.retry import Deadline, RateLimiter
from reconcile.stripe.client import build_stripe_client


def utc_now() -> datetime:
    """Return the current time, aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Clients:
    """What a run talks to and how it tells and passes time; tests inject their own."""

    stripe: stripe.StripeClient
    moesif: MoesifClient
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep


@contextmanager
def open_clients(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Iterator[Clients]:
    """Open the clients a run needs under ``settings``; close them on leaving.

    Both clients retry transient failures as ``RECONCILE_RETRY_ATTEMPTS`` and
    ``RECONCILE_RETRY_BASE_DELAY`` say, waiting with ``sleep``.

    Args:
        settings: where the services are, their credentials, and the retry settings.
        clock: the current time.
        sleep: how to wait, between retries and under rate limits (tests pass a no-op).
        deadline: when the run must end; by default ``RECONCILE_RUN_TIMEOUT`` from now. Both
            clients check it before every request and every wait.
        monotonic: the clock of the Moesif rate limit, which keeps the run to its share
            (``RECONCILE_MOESIF_REQUESTS_PER_MINUTE``) of Moesif's budget.
    """
    deadline = deadline or Deadline.after(settings.run_timeout.total_seconds())
    with open_http_client(settings) as http:
        moesif = MoesifClient(
            http,
            settings.moesif_token,
            policy=settings.retry_policy(),
            limiter=batch_limiter(
                settings, deadline.sleeper(sleep, "the next Moesif request"), monotonic
            ),
            sleep=sleep,
            read_cap=settings.moesif_read_cap,
            deadline=deadline,
        )
        stripe_client = build_stripe_client(settings, sleep=sleep, deadline=deadline)
        yield Clients(stripe_client, moesif, clock, sleep)


def batch_limiter(
    settings: Settings,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> RateLimiter:
    """Return the batch job's Moesif rate: ``RECONCILE_MOESIF_REQUESTS_PER_MINUTE`` a minute.

    On PostgreSQL the minute's count is shared by every run and worker (section 12).
    """
    if shares_budget(settings.database_url):
        return SharedBudget(budget_engine(settings), settings.moesif_requests_per_minute, sleep)
    return RateLimiter(settings.moesif_requests_per_minute, 60.0, clock=monotonic, sleep=sleep)


def live_limiter(
    settings: Settings,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> RateLimiter:
    """Return ``serve``'s Moesif rate: what the batch share leaves of 500 a minute (at least 1).

    On PostgreSQL it counts in the budget every worker shares: the live path may spend up to
    500 a minute, the batch side only up to its share, so the rest is always the live path's.
    """
    if shares_budget(settings.database_url):
        return SharedBudget(budget_engine(settings), MOESIF_BUDGET_LIMIT, sleep)
    rest = max(1, MOESIF_BUDGET_LIMIT - settings.moesif_requests_per_minute)
    return RateLimiter(rest, 60.0, clock=monotonic, sleep=sleep)


def budget_engine(settings: Settings) -> Engine:
    """Return an engine for the shared Moesif budget: a connection per count, none kept open."""
    return create_engine(settings.database_url, poolclass=NullPool)


def posting_engine(
    sessions: sessionmaker[Session],
    moesif: MoesifClient,
    settings: Settings,
    clock: Callable[[], datetime],
    first_read: FirstRead | None = None,
) -> PostingEngine:
    """Return the exactly-once posting engine as every caller builds it from ``settings``.

    ``first_read``: how Moesif is read before a first send (a run reads once for its batch;
    ``serve`` around each posting, the default).
    """
    return PostingEngine(
        sessions,
        moesif,
        amount_unit=settings.moesif_amount_unit,
        clock=clock,
        report_lag=settings.moesif_report_lag,
        first_read=first_read,
    )
