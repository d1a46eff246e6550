"""The reconciliation rules: match expected Stripe entries to the Moesif ledger, name the drift.

The package's modules follow the matcher's seams: ``sides`` (both inputs as integer arrays),
``by_id`` and ``by_amount`` (pairing), ``findings`` and ``unmatched`` (what each pair or
leftover is reported as), ``corrections`` (rows posted from the exception queue, netted
against the drift they settle).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from reconcile.domain.ids import STRIPE_ID_PREFIXES, is_stripe_id
from reconcile.domain.times import Window
from reconcile.domain.values import EXPECTED_COLUMNS, FINDING_COLUMNS, LEDGER_COLUMNS
from reconcile.domain.vocab import Category
from reconcile.matching.by_amount import amount_pairs, repeated_rows
from reconcile.matching.by_id import carried_elsewhere, exact_pairs
from reconcile.matching.corrections import net, set_apart
from reconcile.matching.findings import (
    amount_mismatches,
    duplicate_findings,
    finalise,
    matched_by_amount,
    misapplied,
    missing_in_stripe,
    plain,
)
from reconcile.matching.sides import PAIR, drifting, mask, share_keys, side_of
from reconcile.matching.unmatched import matched_currency_mismatches, unmatched_findings

__all__ = ["STRIPE_ID_PREFIXES", "finding_records", "is_stripe_id", "match", "postable"]


def match(
    expected: pd.DataFrame,
    ledger: pd.DataFrame,
    *,
    window: Window,
    match_window: timedelta,
    subscription_currency: Mapping[str, str | None],
    subscription_company: Mapping[str, str | None] | None = None,
    recheck: Collection[str] = (),
) -> pd.DataFrame:
    """Match expected entries to ledger rows and return one finding per drift (contract §6).

    Args:
        expected: entries derived from Stripe (``EXPECTED_COLUMNS``) for the window widened by
            ``match_window``.
        ledger: Moesif rows (``LEDGER_COLUMNS``) for the widened window, plus every row whose
            ``transaction_id`` equals an expected one.
        window: the run's window; only entries and rows inside it are reported.
        match_window: how far apart in time a row without a Stripe id may be from its entry.
        subscription_currency: Moesif subscription id to its lowercase currency, or ``None``
            when Moesif does not know the subscription; ids not in it are not checked.
        subscription_company: Moesif subscription id to the company Moesif files it under
            (``None`` or absent: not checked). Whether an unmatched entry may be posted is
            :func:`reconcile.rules.destination.destination`, the rule the live path asks too.
        recheck: transaction ids of entries and Moesif ids of rows reported as if inside the
            window wherever they lie (the subjects of findings still open).

    A ledger row whose transaction id is a correction's (``corr_F-…``) is matched against no
    movement; a finding its corrections settle exactly is not reported (``corrections``).

    Returns:
        The findings frame (``FINDING_COLUMNS``): text cells ``str`` or ``None``, amounts
        nullable ``Int64`` minor units, times aware UTC; sorted by category, time and id.

    Raises:
        ValueError: a frame lacks a column or holds naive times.
    """
    ledger, corrections = set_apart(ledger)
    entries = side_of(expected, EXPECTED_COLUMNS, "expected", "transaction_id", window, recheck)
    rows = side_of(ledger, LEDGER_COLUMNS, "ledger", "moesif_id", window, recheck)
    rows = drifting(rows)
    share_keys(entries, rows)

    exact, misplaced = exact_pairs(entries, rows)
    primary = exact.loc[exact["_primary"], PAIR]
    paired_rows = mask(len(rows.time), pd.concat([exact["_l"], misplaced["_l"]]))
    by_amount = amount_pairs(
        entries,
        rows,
        ~mask(len(entries.time), primary["_e"]),
        ~paired_rows,
        match_window,
    )
    matched = pd.concat([primary, by_amount[PAIR]], ignore_index=True)
    duplicates = repeated_rows(entries, rows, exact, matched, paired_rows, match_window)
    matched_entries = mask(len(entries.time), matched["_e"])
    explained = mask(len(rows.time), pd.concat([matched["_l"], duplicates["_l"], misplaced["_l"]]))
    unmatched = np.flatnonzero(entries.inside & ~matched_entries)
    carried = carried_elsewhere(rows, misplaced, len(entries.time))[unmatched]
    found = finalise(
        [
            misapplied(entries, rows, misplaced),
            amount_mismatches(entries, rows, exact),
            matched_by_amount(entries, rows, by_amount),
            duplicate_findings(entries, rows, duplicates),
            missing_in_stripe(rows, np.flatnonzero(rows.inside & ~explained)),
            unmatched_findings(
                entries.take(unmatched).assign(carried_elsewhere=carried),
                subscription_currency,
                subscription_company or {},
            ),
            matched_currency_mismatches(entries, rows, matched, subscription_currency),
        ]
    )
    return net(found, corrections)


def postable(findings: pd.DataFrame) -> pd.DataFrame:
    """Return the ``missing_in_moesif`` findings: the credits and debits a run should post."""
    missing = findings["category"] == Category.MISSING_IN_MOESIF.value
    return findings.loc[missing].reset_index(drop=True)


def finding_records(findings: pd.DataFrame) -> list[dict[str, Any]]:
    """Return findings as plain dicts (``None``, ``int``, aware ``datetime``), e.g. for the DB."""
    records: list[dict[str, Any]] = []
    for row in findings.reindex(columns=FINDING_COLUMNS).itertuples(index=False):
        records.append(
            {name: plain(value) for name, value in zip(FINDING_COLUMNS, row, strict=True)}
        )
    return records
