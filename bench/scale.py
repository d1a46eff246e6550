"""``python -m bench scale --accounts N --workers K``: connected accounts over worker processes.

For each worker count (1, 2 and 4 unless ``--workers`` names others) the fakes are seeded afresh
with ``N`` connected accounts (one customer and ``--payments`` top-ups each; every
``--missing-every``-th account misses one credit in Moesif, the rest already hold theirs), a
fresh PostgreSQL database is made, ``reconcile --accounts all`` defers one job per account and
``K`` ``reconcile worker --until-empty`` processes take them. ``seconds`` runs from the deferring
command's start to its end (every account reconciled); ``moesif_peak_per_minute`` is the most
requests the fake Moesif admitted in one calendar minute, which the shared budget keeps at or
under ``RECONCILE_MOESIF_REQUESTS_PER_MINUTE`` (400). The fake Stripe answers after
``--stripe-latency`` seconds, as a real API over the network does: that wait is what workers
spread.

``--samples S`` (5) rounds, each over every worker count in turn (1, 2, 4, 1, 2, 4, ...), so a
drift of the machine's load falls on every count alike; a line on stderr after each sample.
``--stop-by HH:MM`` (UTC) starts a round only if one as long as the longest so far ends by then,
so a shared machine's slot is kept; the lines say how many samples were taken. Then
one JSON line per worker count: ``seconds`` the median of its samples with ``seconds_min`` and
``seconds_max`` (and each sample's in ``seconds_each``), ``moesif_peak_per_minute`` the busiest
minute of any sample, ``moesif_requests`` and ``posted`` with ``same_work`` true when every sample
of every count made as many Moesif requests and posts (else the lists of what each did, and the
command exits 1, as it does when a run's ``exit_code`` is not 0); then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from reconcile.domain.times import to_iso
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get(
    "RECONCILE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
KEY = "sk_test_bench_scale"
TOKEN = "bench-scale-token"


class SlowStripe(FakeStripe):
    """The fake Stripe answering each request after a network-like latency."""

    latency = 0.0

    def handle(self, method: str, target: str, headers: Mapping[str, str], payload: bytes = b""):
        time.sleep(self.latency)
        return super().handle(method, target, headers, payload)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--accounts", type=int, default=200, help="connected accounts (200)")
    parser.add_argument(
        "--workers", type=int, nargs="+", action="extend", help="worker counts (1 2 4)"
    )
    parser.add_argument("--payments", type=int, default=2, help="top-ups per account (2)")
    parser.add_argument(
        "--missing-every", type=int, default=10, help="every Nth account misses a credit (10)"
    )
    parser.add_argument(
        "--stripe-latency", type=float, default=0.03, help="seconds per Stripe answer (0.03)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=5,
        help="rounds over the worker counts, interleaved; the median and spread are reported (5)",
    )
    parser.add_argument(
        "--stop-by",
        metavar="HH:MM",
        help="start a round only if one as long as the longest so far ends by then (UTC); "
        "the lines report the rounds taken (the first round always runs)",
    )
    parser.add_argument("--database", default=ADMIN_URL, help="PostgreSQL server (admin URL)")
    options = parser.parse_args(argv)
    if min(options.accounts, options.payments, options.missing_every, options.samples) < 1:
        parser.error("--accounts, --payments, --missing-every and --samples must be at least 1")
    counts = list(dict.fromkeys(options.workers or [1, 2, 4]))
    if min(counts) < 1:
        parser.error("--workers must be at least 1")
    stop_by = _stop_by(parser, options.stop_by)
    taken: dict[int, list[dict[str, Any]]] = {workers: [] for workers in counts}
    longest = timedelta(0)
    for number, order in enumerate(rounds(counts, options.samples)):
        if stop_by is not None and not another_round_fits(datetime.now(UTC), longest, stop_by):
            print(
                f"scale: {number} round(s) taken; another ({longest.total_seconds():.0f} s, the "
                f"longest so far) would end after {to_iso(stop_by)}",
                file=sys.stderr,
            )
            break
        began = time.monotonic()
        for workers in order:
            sample = _measure(options, workers)
            taken[workers].append(sample)
            print(_sample_line(number + 1, options.samples, sample), file=sys.stderr)
        longest = max(longest, timedelta(seconds=time.monotonic() - began))
    results = summarized(taken)
    for result in results:
        print(json.dumps(result), flush=True)
    print(table(results))
    return 0 if all(result["ok"] for result in results) else 1


def rounds(counts: Sequence[int], samples: int) -> list[list[int]]:
    """Return the worker counts in the order they are measured: round after round, each in turn."""
    return [list(counts) for _ in range(samples)]


def another_round_fits(now: datetime, longest: timedelta, stop_by: datetime) -> bool:
    """Return whether a round as long as the longest so far would end by ``stop_by``."""
    return now + longest <= stop_by


def _stop_by(parser: argparse.ArgumentParser, text: str | None) -> datetime | None:
    """Return ``--stop-by`` (``HH:MM`` today, or an ISO time; UTC) as a moment, if given."""
    if text is None:
        return None
    now = datetime.now(UTC)
    try:
        if len(text) <= 5:
            clock = datetime.strptime(text, "%H:%M").replace(tzinfo=UTC)
            moment = now.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0)
        else:
            moment = datetime.fromisoformat(text)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        parser.error(f"--stop-by {text!r} is neither HH:MM nor an ISO time")
    if moment <= now:
        parser.error(f"--stop-by {text} has already passed")
    return moment


def summarized(taken: Mapping[int, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Return one JSON line per worker count from its samples (at least one each).

    ``same_work``: every sample of every count made as many Moesif requests and posts, which
    the same seeded work must; ``ok`` also needs every run's exit code 0.
    """
    every = [sample for samples in taken.values() for sample in samples]
    same = len({(s["moesif_requests"], s["posted"]) for s in every}) == 1
    return [_summary(samples, same) for samples in taken.values()]


def _summary(samples: Sequence[Mapping[str, Any]], same: bool) -> dict[str, Any]:
    seconds = [float(sample["seconds"]) for sample in samples]
    first = samples[0]
    exit_codes = [int(sample["exit_code"]) for sample in samples]
    return {
        "benchmark": "scale",
        "accounts": first["accounts"],
        "workers": first["workers"],
        "samples": len(samples),
        "seconds": round(statistics.median(seconds), 2),
        "seconds_min": min(seconds),
        "seconds_max": max(seconds),
        "seconds_each": seconds,
        "moesif_peak_per_minute": max(s["moesif_peak_per_minute"] for s in samples),
        "moesif_peak_per_minute_each": [s["moesif_peak_per_minute"] for s in samples],
        "moesif_requests": first["moesif_requests"]
        if same
        else [s["moesif_requests"] for s in samples],
        "posted": first["posted"] if same else [s["posted"] for s in samples],
        "same_work": same,
        "exit_code": max(exit_codes, key=lambda code: (code != 0, code)),
        "ok": same and set(exit_codes) == {0},
        "stripe_latency": first["stripe_latency"],
        "load_average_each": [s["load_average"] for s in samples],
    }


def _sample_line(number: int, total: int, sample: Mapping[str, Any]) -> str:
    return (
        f"scale round {number}/{total}: {sample['workers']} worker(s), {sample['seconds']} s, "
        f"busiest minute {sample['moesif_peak_per_minute']}, {sample['moesif_requests']} Moesif "
        f"requests, {sample['posted']} posted, exit {sample['exit_code']}, "
        f"load {sample['load_average']} at {sample['ended_utc']}"
    )


def table(results: Sequence[Mapping[str, Any]]) -> str:
    """Return the results as a table: median seconds [least-greatest] per worker count."""
    headers = ["workers", "samples", "seconds [min-max]", "busiest minute", "requests", "posted"]
    rows = [headers] + [
        [
            str(result["workers"]),
            str(result["samples"]),
            f"{result['seconds']} [{result['seconds_min']}-{result['seconds_max']}]",
            str(result["moesif_peak_per_minute"]),
            str(result["moesif_requests"]),
            str(result["posted"]),
        ]
        for result in results
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _measure(options: argparse.Namespace, workers: int) -> dict[str, object]:
    name = f"reconcile_bench_scale_{os.getpid()}_{workers}"
    admin = create_engine(options.database, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(options.database).set(database=name).render_as_string(hide_password=False)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        with (
            SlowStripe(api_key=KEY) as stripe,
            FakeMoesif(token=TOKEN) as moesif,
            tempfile.TemporaryDirectory() as scratch,
        ):
            _seed(stripe, moesif, options, now)
            stripe.latency = options.stripe_latency
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "MOESIF_"))},
                "PYTHONPATH": str(ROOT),
                "STRIPE_API_KEY": KEY,
                "STRIPE_API_BASE": stripe.base_url,
                "MOESIF_MANAGEMENT_TOKEN": TOKEN,
                "MOESIF_API_BASE": moesif.base_url,
                "RECONCILE_DATABASE_URL": url,
                "RECONCILE_REPORT_DIR": str(Path(scratch) / "reports"),
                "STRIPE_MAX_REQUESTS_PER_SECOND": "100",
                "RECONCILE_STRIPE_REPORT_POLL_SECONDS": "0.05",
                "RECONCILE_MAX_POSTINGS": "100000",
            }
            since = to_iso(now - timedelta(days=1))
            began = time.perf_counter()
            command = subprocess.Popen(
                [sys.executable, "-m", "reconcile", "--since", since, "--accounts", "all"],
                env=env,
                cwd=scratch,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait_for_jobs(url, options.accounts, command)
            processes = [
                subprocess.Popen(
                    [sys.executable, "-m", "reconcile", "worker", "--until-empty"],
                    env=env,
                    cwd=scratch,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(workers)
            ]
            exit_code = command.wait()
            seconds = time.perf_counter() - began
            for process in processes:
                process.wait(timeout=120)
            per_minute = moesif.requests_per_minute()
            posted = len(moesif.posts)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
    return {
        "benchmark": "scale",
        "accounts": options.accounts,
        "workers": workers,
        "seconds": round(seconds, 2),
        "moesif_peak_per_minute": max(per_minute.values(), default=0),
        "moesif_requests": sum(per_minute.values()),
        "posted": posted,
        "exit_code": exit_code,
        "stripe_latency": options.stripe_latency,
        "load_average": Path("/proc/loadavg").read_text().split()[0],
        "ended_utc": datetime.now(UTC).strftime("%H:%M:%S"),
    }


def _seed(
    stripe: FakeStripe, moesif: FakeMoesif, options: argparse.Namespace, now: datetime
) -> None:
    for number in range(options.accounts):
        account = stripe.add_account(f"acct_bench{number:05d}")
        company, subscription = f"co_{number}", f"sub_{number}"
        moesif.add_subscription(subscription, company, currency="usd")
        customer = account.add_customer(
            metadata={"moesif_company_id": company, "moesif_subscription_id": subscription}
        )
        for payment in range(options.payments):
            created = now - timedelta(hours=2, minutes=payment)
            paid = account.add_payment_intent(customer, 1000 + payment, created=created)
            if payment == 0 and number % options.missing_every == 0:
                continue  # Moesif misses this credit: the run posts it
            moesif.add_row(
                company,
                subscription,
                "credit",
                Decimal(1000 + payment) / 100,
                created,
                transaction_id=paid,
            )


def _wait_for_jobs(url: str, accounts: int, command: subprocess.Popen[bytes]) -> None:
    engine = create_engine(url)
    query = text("SELECT count(*) FROM procrastinate_jobs")
    try:
        while command.poll() is None:
            with engine.connect() as connection:
                ready = connection.scalar(text("SELECT to_regclass('procrastinate_jobs')"))
                if ready is not None and connection.scalar(query) >= accounts:
                    return
            time.sleep(0.2)
        raise SystemExit(f"the deferring command ended early with exit {command.returncode}")
    finally:
        engine.dispose()
