"""The ``balances`` benchmark: ``reconcile balances`` over ``size`` subscriptions at Moesif's limit.

The snapshot is filled directly (no HTTP): each subscription has a top-up from Stripe, the credit
that matched it in Moesif and metered usage after it, ``ROWS_PER_SUBSCRIPTION`` billing-report
rows in all, each carrying its running balance as Moesif's rows do; and one run that read the
last day in full. Most subscriptions were metered within that day; ``QUIET_SHARE`` of them last
moved days before it, and ``NEW_SHARE`` have a top-up but no Moesif row yet: those are the ones
the check must ask Moesif about.

The check is the command's own (:func:`reconcile.operator.balances.check_balances`) with the real
Moesif client against the fake Moesif, which answers 429 past 500 requests in a calendar minute.
Time is virtual for the waits only: the client is kept to the batch's share
(``RECONCILE_MOESIF_REQUESTS_PER_MINUTE``, 400) by a limiter whose sleeps advance a clock instead
of waiting, so ``seconds`` is the real processing time plus the time the limiter would have made
the check wait at the real limit. The yardstick is the same check on the same snapshot without
its run: then no row is known to be recent and every balance is read, one request each, as
before this change.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import sessionmaker

from reconcile.clients import batch_limiter
from reconcile.config import Secret, Settings
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.models import ExpectedRow, LedgerEntry, Run
from reconcile.fakes.moesif import FakeMoesif
from reconcile.moesif.client import MOESIF_RATE_LIMIT
from reconcile.operator.balances import check_balances

TOKEN = "bench-token"
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
ROWS_PER_SUBSCRIPTION = 10
QUIET_SHARE = 0.02
"""Subscriptions whose latest row is older than the last run's window."""
NEW_SHARE = 0.01
"""Subscriptions with a Stripe top-up and no Moesif row."""
CHUNK = 5_000


class _VirtualWaits:
    """A clock that moves only when the limiter sleeps: the waits are counted, never spent."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def monotonic(self) -> float:
        return self.seconds

    def sleep(self, seconds: float) -> None:
        self.seconds += max(seconds, 1e-6)

    def utc(self) -> datetime:
        return NOW + timedelta(seconds=self.seconds)


def _kind(number: int, size: int) -> str:
    if number < round(size * NEW_SHARE):
        return "new"
    if number < round(size * (NEW_SHARE + QUIET_SHARE)):
        return "quiet"
    return "active"


def fill(url: str, size: int, *, with_run: bool) -> dict[str, Any]:
    """Fill an empty snapshot at ``url`` with ``size`` subscriptions; return what it holds."""
    engine = make_engine(url)
    upgrade_to_head(engine)
    ledger_rows = 0
    with sessionmaker(engine).begin() as session:
        if with_run:
            session.add(
                Run(
                    id="20261201T020000Z-bench0",
                    since=NOW - timedelta(days=1),
                    until=NOW,
                    status="succeeded",
                    exit_code=0,
                    started_at=NOW,
                    finished_at=NOW + timedelta(minutes=1),
                )
            )
        expected: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for number in range(size):
            expected.append(_top_up(number))
            rows += _rows(number, _kind(number, size))
            if len(rows) >= CHUNK:
                session.execute(insert(ExpectedRow), expected)
                session.execute(insert(LedgerEntry), rows)
                ledger_rows += len(rows)
                expected, rows = [], []
        if expected:
            session.execute(insert(ExpectedRow), expected)
        if rows:
            session.execute(insert(LedgerEntry), rows)
            ledger_rows += len(rows)
    engine.dispose()
    return {"ledger_rows": ledger_rows}


def _top_up(number: int) -> dict[str, Any]:
    return {
        "transaction_id": f"pi_{number}",
        "source": "topup",
        "entry_type": "credit",
        "amount_minor": 10_000,
        "currency": "usd",
        "created_at": NOW - timedelta(days=20),
        "stripe_object_id": f"pi_{number}",
        "topup_id": f"pi_{number}",
        "stripe_customer_id": f"cus_{number}",
        "company_id": f"co_{number}",
        "subscription_id": f"sub_{number}",
        "first_seen_run_id": "r0",
        "last_seen_run_id": "r0",
        "updated_at": NOW,
    }


def _rows(number: int, kind: str) -> list[dict[str, Any]]:
    """The subscription's billing-report rows: its credit, then hourly usage, balances chained."""
    if kind == "new":
        return []
    last = NOW - (timedelta(days=4) if kind == "quiet" else timedelta(hours=2))
    rows = []
    balance = 0
    for sequence in range(1, ROWS_PER_SUBSCRIPTION + 1):
        credit = sequence == 1
        at = (
            NOW - timedelta(days=20)
            if credit
            else last - timedelta(hours=ROWS_PER_SUBSCRIPTION - sequence)
        )
        change = 10_000 if credit else -50
        rows.append(
            {
                "moesif_id": f"{number:012x}{sequence:04x}",
                "transaction_id": f"pi_{number}" if credit else None,
                "entry_type": "credit" if credit else "usage",
                "amount_minor": abs(change),
                "amount_raw": str(abs(change)),
                "currency": "usd",
                "company_id": f"co_{number}",
                "subscription_id": f"sub_{number}",
                "created_at": at,
                "description": None,
                "first_seen_at": NOW,
                "last_seen_at": NOW,
                "sequence_id": sequence,
                "beginning_current_minor": balance,
                "beginning_pending_minor": 0,
                "beginning_available_minor": balance,
                "ending_current_minor": balance + change,
                "ending_pending_minor": 0,
                "ending_available_minor": balance + change,
                "balance_changes": str(change),
            }
        )
        balance += change
    return rows


def check(url: str, size: int, report_dir: Path) -> dict[str, Any]:
    """Run one balance check against the fake Moesif; return its time and requests."""
    waits = _VirtualWaits()
    with FakeMoesif(TOKEN, rate_limit=MOESIF_RATE_LIMIT, clock=waits.utc) as fake:
        for number in range(size):
            fake.add_subscription(f"sub_{number}", f"co_{number}")
        settings = Settings(
            stripe_api_key=Secret("unused"),
            moesif_token=Secret(TOKEN),
            moesif_api_base=fake.base_url,
            database_url=url,
            report_dir=report_dir,
        )
        began = time.perf_counter()
        done = check_balances(
            settings,
            clock=waits.utc,
            limiter=batch_limiter(settings, waits.sleep, waits.monotonic),
        )
        processing = time.perf_counter() - began
        exchanges = fake.exchanges
        admitted = fake.requests_per_minute()
    done.path.unlink()
    refused = Counter(exchange.status for exchange in exchanges)[429]
    return {
        "seconds": processing + waits.seconds,
        "processing_seconds": processing,
        "wait_seconds": waits.seconds,
        "subscriptions": len({row.subscription_id for row in done.rows}),
        "rows": len(done.rows),
        "moesif_requests": len(exchanges),
        "read_from_moesif": done.read_from_moesif,
        "requests_429": refused,
        "busiest_minute": max(admitted.values(), default=0),
        "batch_requests_per_minute": settings.moesif_requests_per_minute,
    }
