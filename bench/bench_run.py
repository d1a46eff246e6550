"""Time one whole run (Stripe paging, ledger sync, matching, posting, report) against the fakes.

Usage: python bench/bench_run.py [N ...]   (default: 1000 5000)

Seeds N top-ups: 90% already credited by a webhook with the right id, 5% credited with a random
id, 5% missing (posted by the run). Prints seconds per run, postings, and peak RSS.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from reconcile.clients import open_clients
from reconcile.config import Settings
from reconcile.demo import DEMO_MOESIF_TOKEN, DEMO_STRIPE_KEY, demo_settings
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe
from reconcile.run import RunRequest, execute


def seed(stripe: FakeStripe, moesif: FakeMoesif, count: int, now: datetime) -> None:
    customers = []
    for number in range(max(1, count // 10)):
        company = f"co{number}"
        moesif.add_subscription(f"sub_{company}", company)
        customers.append(
            (
                stripe.add_customer(
                    metadata={
                        "moesif_company_id": company,
                        "moesif_subscription_id": f"sub_{company}",
                    }
                ),
                company,
            )
        )
    span = timedelta(days=3) / count
    for number in range(count):
        customer, company = customers[number % len(customers)]
        created = now - timedelta(days=3) + number * span
        amount = 1000 + number % 5000
        intent = stripe.add_payment_intent(customer, amount, created=created)
        kind = number % 20
        if kind == 0:
            continue
        moesif.add_row(
            company,
            f"sub_{company}",
            "credit",
            Decimal(amount).scaleb(-2),
            created + timedelta(seconds=30),
            transaction_id=None if kind == 1 else intent,
        )


def bench(count: int) -> tuple[float, int]:
    now = datetime.now(UTC).replace(microsecond=0)
    with (
        FakeStripe(api_key=DEMO_STRIPE_KEY) as stripe,
        FakeMoesif(token=DEMO_MOESIF_TOKEN, rate_limit=10**9) as moesif,
        tempfile.TemporaryDirectory() as scratch,
    ):
        seed(stripe, moesif, count, now)
        settings: Settings = demo_settings(
            stripe, moesif, f"sqlite:///{Path(scratch) / 'bench.db'}", Path(scratch)
        )
        settings = Settings(**{**settings.__dict__, "max_postings": count})
        started = time.perf_counter()
        with open_clients(settings) as clients:
            outcome = execute(settings, RunRequest(since=now - timedelta(days=4)), clients, now=now)
        return time.perf_counter() - started, outcome.posted


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [1000, 5000]
    print(f"{'top-ups':>8} {'seconds':>8} {'posted':>7} {'peak RSS MiB':>13}")
    for count in sizes:
        seconds, posted = bench(count)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{count:>8} {seconds:>8.2f} {posted:>7} {peak:>13.0f}")


if __name__ == "__main__":
    main()
