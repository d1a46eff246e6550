"""Per-category totals of findings: minor units summed by category, currency and entry type."""

from __future__ import annotations

import pandas as pd

from reconcile.domain.money import to_major

FALLBACK_CURRENCY = "usd"
"""The currency a finding without one is counted and shown in."""

Key = tuple[str, str, str]
"""``(category, currency, entry_type)``."""


def category_sums(findings: pd.DataFrame, *, stripe_only: bool) -> dict[Key, int]:
    """Return the findings' amounts summed per category, currency and entry type.

    Credits and debits are never added together.

    Args:
        findings: the findings frame.
        stripe_only: count only Stripe's amounts, leaving out findings without a currency;
            otherwise Stripe's amount where present, else Moesif's, a missing currency counted
            as :data:`FALLBACK_CURRENCY`; findings with neither amount are left out.
    """
    if stripe_only:
        rows = findings.dropna(subset=["stripe_amount_minor", "currency"])
        amounts = rows["stripe_amount_minor"]
        currencies = rows["currency"].astype(str)
    else:
        rows = findings.dropna(subset=["stripe_amount_minor", "moesif_amount_minor"], how="all")
        amounts = rows["stripe_amount_minor"].fillna(rows["moesif_amount_minor"]).fillna(0)
        currencies = rows["currency"].fillna(FALLBACK_CURRENCY).astype(str).str.lower()
    keys = pd.DataFrame(
        {
            "category": rows["category"].astype(str),
            "currency": currencies,
            "entry_type": rows["entry_type"].fillna("").astype(str),
            "amount": amounts.astype("int64"),
        }
    )
    sums = keys.groupby(["category", "currency", "entry_type"], sort=True, as_index=False)[
        "amount"
    ].sum()
    return {
        (str(category), str(currency), str(entry_type)): int(total)
        for category, currency, entry_type, total in sums.itertuples(index=False, name=None)
    }


def category_totals(findings: pd.DataFrame, *, stripe_only: bool) -> dict[Key, str]:
    """Return :func:`category_sums` in major units, as exact decimal text."""
    return {
        key: str(to_major(total, key[1]))
        for key, total in category_sums(findings, stripe_only=stripe_only).items()
    }
