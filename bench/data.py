"""Seeded histories for the benchmarks: expected entries, ledger rows, subscription currencies.

The mix per expected entry: 90% matched by exact id, 5% by amount (random ledger id), 3% missing
in Moesif, 2% exact plus a duplicate retry row with a random id; plus 1% extra ledger credits with
no Stripe movement and 5% promotions. One company (and subscription) per ten entries, times
spread over 7 days around a 3-day window, a 48-hour match window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from reconcile.domain.times import Window
from reconcile.domain.values import EXPECTED_COLUMNS, LEDGER_COLUMNS

START = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = Window(START + timedelta(days=2), START + timedelta(days=5))
MATCH_WINDOW = timedelta(hours=48)
AMOUNTS = np.array([500, 1000, 2000, 5000, 10000], dtype="int64")


def generate(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str | None]]:
    """Return (expected, ledger, subscription currencies) for ``n`` expected entries."""
    rng = np.random.default_rng(seed)
    companies = max(n // 10, 1)
    company = rng.integers(0, companies, n)
    seconds = rng.integers(0, 7 * 86400, n)
    created = pd.to_datetime(START) + pd.to_timedelta(seconds, unit="s")
    debit = rng.random(n) < 0.1
    prefix = np.where(debit, "re_", "pi_").astype(object)
    ids = prefix + pd.Series(np.arange(n)).map("{:09d}".format).to_numpy(dtype=object)
    company_names = pd.Series(company).map("co_{}".format).to_numpy(dtype=object)
    expected = pd.DataFrame(
        {
            "transaction_id": ids,
            "source": np.where(debit, "refund", "topup"),
            "entry_type": np.where(debit, "debit", "credit"),
            "amount_minor": rng.choice(AMOUNTS, n),
            "currency": "usd",
            "created_at": created,
            "stripe_object_id": ids,
            "topup_id": ids,
            "stripe_customer_id": "cus_" + company_names,
            "company_id": company_names,
            "subscription_id": "sub_" + company_names,
            "unmapped_reason": None,
        },
        columns=EXPECTED_COLUMNS,
    )
    ledger = _ledger(expected, rng)
    currencies: dict[str, str | None] = {f"sub_co_{c}": "usd" for c in range(companies)}
    return expected, ledger, currencies


def _ledger(expected: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(expected)
    kind = rng.random(n)
    exact = kind < 0.90
    anonymous = (kind >= 0.90) & (kind < 0.95)
    duplicated = kind >= 0.98
    lag = pd.to_timedelta(rng.integers(0, 3 * 3600, n), unit="s")
    parts = [
        _rows(expected[exact | duplicated], True, lag, "e"),
        _rows(expected[anonymous | duplicated], False, lag, "a"),
    ]
    extra = expected.sample(frac=0.01, random_state=1)
    parts.append(_rows(extra.assign(amount_minor=777), False, lag, "x"))
    promotions = expected.sample(frac=0.05, random_state=2).assign(entry_type="promotion")
    parts.append(_rows(promotions, False, lag, "p"))
    return pd.concat(parts, ignore_index=True)[LEDGER_COLUMNS]


def _rows(entries: pd.DataFrame, keep_ids: bool, lag: pd.TimedeltaIndex, tag: str) -> pd.DataFrame:
    count = len(entries)
    numbers = pd.Series(np.arange(count))
    transaction_ids = (
        entries["transaction_id"].to_numpy(dtype=object)
        if keep_ids
        else numbers.map(f"{tag}-{{:x}}".format).to_numpy(dtype=object)
    )
    return pd.DataFrame(
        {
            "moesif_id": numbers.map(f"m{tag}{{}}".format).to_numpy(dtype=object),
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
