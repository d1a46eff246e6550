"""Time reconcile.matching.match() on generated histories: N, seconds, peak RSS.

Usage: python bench/bench_matching.py [N ...]        (default: 10000 100000)

Each N runs in its own child process so that its peak RSS is its own. The mix per expected
entry: 90% matched by exact id, 5% by amount (random ledger id), 3% missing in Moesif, 2% exact
plus a duplicate retry row with a random id; plus 1% extra ledger credits with no Stripe
movement and 5% promotions. Times spread over 7 days around a 3-day window; 48h match window.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from reconcile.domain import EXPECTED_COLUMNS, LEDGER_COLUMNS
from reconcile.matching import match
from reconcile.times import Window

START = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = Window(START + timedelta(days=2), START + timedelta(days=5))
AMOUNTS = np.array([500, 1000, 2000, 5000, 10000], dtype="int64")


def generate(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str | None]]:
    rng = np.random.default_rng(seed)
    companies = max(n // 10, 1)
    company = rng.integers(0, companies, n)
    seconds = rng.integers(0, 7 * 86400, n)
    created = pd.to_datetime(START) + pd.to_timedelta(seconds, unit="s")
    debit = rng.random(n) < 0.1
    ids = np.array(
        [("re_" if d else "pi_") + f"{i:09d}" for i, d in enumerate(debit)], dtype=object
    )
    company_ids = np.array([f"co_{c}" for c in company], dtype=object)
    subscription_ids = np.array([f"sub_{c}" for c in company], dtype=object)
    entry_type = np.where(debit, "debit", "credit")
    expected = pd.DataFrame(
        {
            "transaction_id": ids,
            "source": np.where(debit, "refund", "topup"),
            "entry_type": entry_type,
            "amount_minor": rng.choice(AMOUNTS, n),
            "currency": "usd",
            "created_at": created,
            "stripe_object_id": ids,
            "topup_id": ids,
            "stripe_customer_id": np.array([f"cus_{c}" for c in company], dtype=object),
            "company_id": company_ids,
            "subscription_id": subscription_ids,
            "unmapped_reason": None,
        },
        columns=EXPECTED_COLUMNS,
    )
    ledger = _ledger(expected, rng)
    currencies: dict[str, str | None] = {f"sub_{c}": "usd" for c in range(companies)}
    return expected, ledger, currencies


def _ledger(expected: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(expected)
    kind = rng.random(n)
    exact = kind < 0.90
    anonymous = (kind >= 0.90) & (kind < 0.95)
    duplicated = kind >= 0.98
    lag = pd.to_timedelta(rng.integers(0, 3 * 3600, n), unit="s")
    parts = [
        _rows(expected[exact | duplicated], expected["transaction_id"], lag, "e"),
        _rows(expected[anonymous | duplicated], None, lag, "a"),
    ]
    extra = expected.sample(frac=0.01, random_state=1)
    parts.append(_rows(extra.assign(amount_minor=777), None, lag, "x"))
    promotions = expected.sample(frac=0.05, random_state=2).assign(entry_type="promotion")
    parts.append(_rows(promotions, None, lag, "p"))
    return pd.concat(parts, ignore_index=True)[LEDGER_COLUMNS]


def _rows(
    entries: pd.DataFrame, ids: pd.Series | None, lag: pd.TimedeltaIndex, tag: str
) -> pd.DataFrame:
    count = len(entries)
    transaction_ids = (
        entries["transaction_id"].to_numpy()
        if ids is not None
        else np.array([f"{tag}-{i:x}" for i in range(count)], dtype=object)
    )
    return pd.DataFrame(
        {
            "moesif_id": [f"m{tag}{i}" for i in range(count)],
            "transaction_id": transaction_ids,
            "entry_type": entries["entry_type"].to_numpy(),
            "amount_minor": entries["amount_minor"].to_numpy(),
            "amount_raw": entries["amount_minor"].astype(str).to_numpy(),
            "currency": "usd",
            "company_id": entries["company_id"].to_numpy(),
            "subscription_id": entries["subscription_id"].to_numpy(),
            "created_at": entries["created_at"].array + lag[:count],
            "description": None,
        }
    )


def measure(n: int) -> str:
    expected, ledger, currencies = generate(n)
    began = time.perf_counter()
    findings = match(
        expected,
        ledger,
        window=WINDOW,
        match_window=timedelta(hours=48),
        subscription_currency=currencies,
    )
    seconds = time.perf_counter() - began
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = findings["category"].value_counts().to_dict()
    return f"{n}\t{len(ledger)}\t{seconds:.2f}\t{peak_mib:.0f}\t{counts}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(measure(args.sizes[0]))
        return
    print(f"{'N':>9}  {'ledger':>9}  {'seconds':>8}  {'peak MiB':>8}  findings")
    for n in args.sizes:
        command = [sys.executable, __file__, "--child", str(n)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        size, rows, seconds, peak, counts = output.strip().split("\t")
        print(f"{size:>9}  {rows:>9}  {seconds:>8}  {peak:>8}  {counts}")


if __name__ == "__main__":
    main()
