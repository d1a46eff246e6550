"""Corrections posted from the exception queue: set apart from the ledger, netted against drift.

A correction is a Moesif row whose ``transaction_id`` is ``corr_F-…`` (or ``corr_F-…_2``): the
credit or debit an operator posted to settle finding ``F-…`` (section 10a). It stands for no
Stripe movement, so it is never matched as one (nor reported ``missing_in_stripe``). A finding
whose corrections move its subscription's balance by exactly its ``delta`` is settled: it is
no longer reported, so the run closes it. For a ``misapplied`` row moved by its two legs, the
movement's own ``missing_in_moesif`` finding (held back while the row sat elsewhere) is
settled by the second leg too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reconcile.domain.ids import finding_id
from reconcile.domain.vocab import Category, EntryType
from reconcile.rules.correction import PREFIX, corrected_finding
from reconcile.rules.delta import correction


def set_apart(ledger: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the ledger without its correction rows, and the correction rows."""
    # only ids with the correction prefix can name one: the rule is asked about those alone,
    # found by one pass over the column (no Python object per id)
    ids = ledger["transaction_id"]
    prefixed = np.flatnonzero(ids.astype("str").str.startswith(PREFIX, na=False).to_numpy(bool))
    keep = np.zeros(len(ledger), dtype=bool)
    for position, tid in zip(prefixed, ids.iloc[prefixed].tolist(), strict=True):
        keep[position] = isinstance(tid, str) and corrected_finding(tid) is not None
    if not keep.any():
        return ledger.reset_index(drop=True), ledger.iloc[:0].reset_index(drop=True)
    return ledger[~keep].reset_index(drop=True), ledger[keep].reset_index(drop=True)


def net(findings: pd.DataFrame, corrections: pd.DataFrame) -> pd.DataFrame:
    """Return the findings without those their corrections settle exactly."""
    if corrections.empty or findings.empty:
        return findings
    legs = posted_legs(corrections)
    settled: list[bool] = []
    moved: set[tuple[str, int | None]] = set()
    plain = findings.astype(object).where(findings.notna(), None)
    records = [{str(k): v for k, v in row.items()} for row in plain.to_dict("records")]
    for record in records:
        key = _id_of(record)
        delta = _delta(record)
        done = key is not None and delta is not None and legs.get((key, 1)) == delta
        settled.append(done)
        if done and key and record["category"] == Category.MISAPPLIED and (key, 2) in legs:
            moved.add((str(record["transaction_id"]), legs[(key, 2)]))
    for position, record in enumerate(records):
        if record["category"] == Category.MISSING_IN_MOESIF:
            if (str(record["transaction_id"]), _delta(record)) in moved:
                settled[position] = True
    return findings[[not done for done in settled]].reset_index(drop=True)


def posted_legs(corrections: pd.DataFrame) -> dict[tuple[str, int], int]:
    """Return, per (finding id, leg), the signed minor units its correction rows post."""
    legs: dict[tuple[str, int], int] = {}
    for tid, kind, amount in zip(
        corrections["transaction_id"],
        corrections["entry_type"],
        corrections["amount_minor"],
        strict=True,
    ):
        named = corrected_finding(str(tid))
        if named is not None:
            signed = -int(amount) if kind == EntryType.DEBIT else int(amount)
            legs[named] = legs.get(named, 0) + signed
    return legs


def _id_of(record: dict[str, object]) -> str | None:
    try:
        return finding_id(
            str(record["category"]), _text(record["transaction_id"]), _text(record["moesif_id"])
        )
    except ValueError:
        return None


def _delta(record: dict[str, object]) -> int | None:
    return correction(
        str(record["category"]),
        _text(record["entry_type"]),
        _minor(record["stripe_amount_minor"]),
        _minor(record["moesif_amount_minor"]),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _minor(value: object) -> int | None:
    return None if value is None else int(str(value))
