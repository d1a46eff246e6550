"""What the proofs of the balance add to a run: running-balance chains, control totals.

Usage: ``python -m bench.checks [--size N] [--skip-demo]`` (default size 100,000). Prints one
JSON line per measurement, with the load average when it began:

* ``checks_demo``: the demo's first run (``reconcile demo``'s history, over HTTP against the
  fakes), its whole time and the time of the two checks inside it, each timed where the run
  calls it: ``balance_chains.check`` and ``control_totals.check``, and within the latter
  ``counterparts`` and ``balance_summary`` (creating Stripe's report run, looking at it,
  downloading its file; the demo looks every 0.05 s).
* ``checks_chains``: ``balance_chains.check`` itself over a SQLite snapshot of ``size`` ledger
  rows with running balances (one subscription per ten rows, every subscription's balance
  kept), as the run calls it after reading Moesif: every subscription touched.
* ``checks_totals``: the control totals' own work on ``size`` paged balance transactions, each
  top-up with its charge's: ``counterparts`` (no Stripe request: every named transaction was
  paged), ``missing_counterparts`` and ``total_mismatches`` against Stripe's summary.
  Fetching the summary is a fixed number of requests whatever the size (measured in the demo);
  Stripe takes its own time to compute it, which no benchmark here can measure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import wraps
from importlib import import_module
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import insert
from sqlalchemy.orm import sessionmaker

from reconcile.clients import open_clients
from reconcile.config import Secret, Settings
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.models import LedgerEntry, MoesifSubscription
from reconcile.demo import (
    DEMO_MOESIF_TOKEN,
    DEMO_STRIPE_KEY,
    HISTORY,
    demo_settings,
    seed,
    seed_review_cases,
)
from reconcile.domain.money import format_major
from reconcile.domain.times import Window
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe
from reconcile.rules.control_totals import (
    MovedObject,
    PagedTransaction,
    TransactionRef,
    missing_counterparts,
    total_mismatches,
)
from reconcile.rules.window import run_spans
from reconcile.run import RunRequest, execute
from reconcile.steps import balance_chains
from reconcile.steps.begin import Begun
from reconcile.stripe.client import build_stripe_client
from reconcile.stripe.counterparts import Paged, PagedMovement, PagedObject, counterparts

START = datetime(2026, 11, 1, tzinfo=UTC)
CHUNK = 10_000

DEMO_PHASES = {
    "balance_chains_seconds": ("reconcile.steps.balance_chains", "check"),
    "control_totals_seconds": ("reconcile.steps.control_totals", "check"),
    "counterparts_seconds": ("reconcile.steps.control_totals", "counterparts"),
    "summary_seconds": ("reconcile.steps.control_totals", "balance_summary"),
}


def main(argv: list[str] | None = None) -> int:
    """Run the measurements; print one JSON line each."""
    parser = argparse.ArgumentParser(prog="python -m bench.checks", description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--skip-demo", action="store_true")
    options = parser.parse_args(argv)
    if not options.skip_demo:
        _print(demo())
    _print(chains(options.size))
    _print(totals(options.size))
    return 0


def _print(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)  # noqa: T201 - a benchmark's output


def _load() -> str:
    return " ".join(f"{figure:.2f}" for figure in os.getloadavg())


def demo() -> dict[str, Any]:
    """Time the demo's first run and the checks inside it."""
    load = _load()
    now = datetime.now(UTC).replace(microsecond=0)
    phases: dict[str, float] = defaultdict(float)
    with (
        FakeStripe(api_key=DEMO_STRIPE_KEY) as stripe,
        FakeMoesif(token=DEMO_MOESIF_TOKEN) as moesif,
        tempfile.TemporaryDirectory() as scratch,
    ):
        seed(stripe, moesif, now)
        seed_review_cases(stripe, moesif, now)
        settings = demo_settings(
            stripe, moesif, f"sqlite:///{Path(scratch) / 'demo.db'}", Path(scratch)
        )
        with open_clients(settings) as clients, _timed(DEMO_PHASES, phases):
            began = time.perf_counter()
            execute(settings, RunRequest(since=now - HISTORY, trigger="demo"), clients, now=now)
            seconds = time.perf_counter() - began
    checks = phases["balance_chains_seconds"] + phases["control_totals_seconds"]
    return {
        "benchmark": "checks_demo",
        "run_seconds": round(seconds, 3),
        **{name: round(value, 4) for name, value in phases.items()},
        "checks_share": round(checks / seconds, 3),
        "loadavg": load,
    }


def chains(size: int) -> dict[str, Any]:
    """Time ``balance_chains.check`` over ``size`` rows with running balances."""
    load = _load()
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'chains.db'}"
        subscriptions = _fill_chains(url, size)
        engine = make_engine(url)
        try:
            sessions = sessionmaker(engine, expire_on_commit=False)
            window = Window(START, START + timedelta(days=7))
            spans = run_spans(window, timedelta(hours=48), START + timedelta(days=8))
            run = Begun("bench", START + timedelta(days=8), spans, Path(scratch))
            began = time.perf_counter()
            checked = balance_chains.check(sessions, run, (), "major")
            seconds = time.perf_counter() - began
        finally:
            engine.dispose()
    return {
        "benchmark": "checks_chains",
        "size": size,
        "subscriptions": subscriptions,
        "seconds": round(seconds, 3),
        "rows_checked": checked.rows,
        "reported_compared": checked.reported,
        "breaks": len(checked.findings),
        "loadavg": load,
    }


def _fill_chains(url: str, size: int) -> int:
    """Write ``size`` chained rows, one subscription per ten, and each one's balance; return
    how many subscriptions."""
    engine = make_engine(url)
    rng = random.Random(7)
    count = max(size // 10, 1)
    seen = START + timedelta(days=8)
    try:
        upgrade_to_head(engine)
        balances: dict[int, tuple[int, int]] = {}
        rows: list[dict[str, Any]] = []
        with engine.begin() as connection:
            for number in range(size):
                subscription = number % count
                sequence, current = balances.get(subscription, (0, 0))
                usage = rng.random() < 0.3 and current > 0
                amount = rng.randint(1, max(current, 1)) if usage else rng.choice((500, 1000, 5000))
                change = -amount if usage else amount
                rows.append(
                    {
                        "moesif_id": f"m{number:09d}",
                        "transaction_id": None if usage else f"pi_{number:09d}",
                        "entry_type": "usage" if usage else "credit",
                        "amount_minor": amount,
                        "amount_raw": format_major(amount, "usd"),
                        "currency": "usd",
                        "company_id": f"co_{subscription}",
                        "subscription_id": f"sub_{subscription}",
                        "created_at": START + timedelta(seconds=number * 6),
                        "first_seen_at": seen,
                        "last_seen_at": seen,
                        "sequence_id": sequence + 1,
                        "beginning_current_minor": current,
                        "beginning_pending_minor": 0,
                        "beginning_available_minor": current,
                        "ending_current_minor": current + change,
                        "ending_pending_minor": 0,
                        "ending_available_minor": current + change,
                        "balance_changes": str(change),
                    }
                )
                balances[subscription] = (sequence + 1, current + change)
                if len(rows) == CHUNK:
                    connection.execute(insert(LedgerEntry), rows)
                    rows = []
            if rows:
                connection.execute(insert(LedgerEntry), rows)
            connection.execute(
                insert(MoesifSubscription),
                [
                    {
                        "subscription_id": f"sub_{subscription}",
                        "currency": "usd",
                        "company_id": f"co_{subscription}",
                        "fetched_at": seen + timedelta(minutes=1),
                        "current_balance": format_major(current, "usd"),
                        "balance_sequence_id": sequence,
                    }
                    for subscription, (sequence, current) in balances.items()
                ],
            )
    finally:
        engine.dispose()
    return count


def totals(size: int) -> dict[str, Any]:
    """Time the control totals' work on ``size`` paged balance transactions."""
    load = _load()
    paged, summary = _paged(size)
    window = Window(START, START + timedelta(days=7))
    settings = Settings(
        stripe_api_key=Secret("sk_test_bench_offline"),
        moesif_token=Secret("bench-offline-token"),
        stripe_api_base="http://127.0.0.1:9",
        retry_attempts=1,
    )
    client = build_stripe_client(settings, sleep=_refuse_to_wait)
    began = time.perf_counter()
    moved, refs = counterparts(client, paged, window)
    middle = time.perf_counter()
    gaps = missing_counterparts(moved, refs)
    mismatches = total_mismatches(
        [item.transaction for item in paged if isinstance(item, PagedMovement)], summary
    )
    ended = time.perf_counter()
    return {
        "benchmark": "checks_totals",
        "size": size,
        "seconds": round(ended - began, 3),
        "counterparts_seconds": round(middle - began, 3),
        "rules_seconds": round(ended - middle, 3),
        "gaps": len(gaps),
        "mismatches": len(mismatches),
        "loadavg": load,
    }


def _refuse_to_wait(seconds: float) -> None:
    raise RuntimeError(f"the benchmark asked Stripe something (waited {seconds:.1f} s)")


def _paged(size: int) -> tuple[list[Paged], list[dict[str, str]]]:
    """``size`` paged movements: top-ups (each with its charge's) and one refund per ten."""
    paged: list[Paged] = []
    gross: dict[str, list[int]] = {"charge": [0, 0], "refund": [0, 0]}
    epoch = int(START.timestamp())
    for number in range(size):
        refund = number % 10 == 9
        category = "refund" if refund else "charge"
        amount = -500 if refund else 1000 + number % 5000
        transaction = PagedTransaction(f"txn_{number}", category, "usd", amount, 0, amount)
        source = f"re_{number}" if refund else f"ch_{number}"
        ref = TransactionRef(transaction.id, source, category)
        paged.append(PagedMovement(transaction, epoch + number, ref))
        if refund:
            paged.append(PagedObject(MovedObject(source, "refund", (transaction.id,))))
        else:
            paged.append(PagedObject(MovedObject(f"pi_{number}", "top-up", ()), source))
        gross[category][0] += 1
        gross[category][1] += amount
    summary = [
        {
            "reporting_category": category,
            "currency": "usd",
            "count": str(count),
            "gross": format_major(total, "usd"),
            "fee": "0.00",
            "net": format_major(total, "usd"),
        }
        for category, (count, total) in gross.items()
    ]
    return paged, summary


@contextlib.contextmanager
def _timed(steps: dict[str, tuple[str, str]], phases: dict[str, float]) -> Iterator[None]:
    """Wrap each step where the run calls it, adding its time to ``phases``."""
    with contextlib.ExitStack() as stack:
        for name, (module, attribute) in steps.items():
            target = import_module(module)
            step = _clocked(getattr(target, attribute), name, phases)
            stack.enter_context(mock.patch.object(target, attribute, step))
        yield


def _clocked(step: Callable[..., Any], name: str, phases: dict[str, float]) -> Callable[..., Any]:
    @wraps(step)
    def clocked(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            phases[name] += time.perf_counter() - began

    return clocked


if __name__ == "__main__":
    raise SystemExit(main())
