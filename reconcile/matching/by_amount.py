"""Rules 2 and 3's pairing: rows without a Stripe id matched by amount, and rows that repeat."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from reconcile.domain.ids import STRIPE_ID_PREFIXES
from reconcile.matching.sides import MICROSECOND, PAIR, BoolArray, IntArray, Side, mask, row_codes


def amount_pairs(
    entries: Side,
    rows: Side,
    free_entries: BoolArray,
    free_rows: BoolArray,
    match_window: timedelta,
) -> pd.DataFrame:
    """Pair mapped entries with rows that carry no Stripe id: one to one, nearest first."""
    anonymous = _anonymous(rows, np.flatnonzero(free_rows))
    candidates = _candidates(entries, rows, np.flatnonzero(free_entries), anonymous, match_window)
    chosen = _one_to_one(candidates["_e"].to_numpy(), candidates["_l"].to_numpy())
    return candidates.loc[chosen].reset_index(drop=True)


def _anonymous(rows: Side, positions: IntArray) -> IntArray:
    """Return those of ``positions`` whose transaction id names no Stripe movement."""
    ids = rows.text("transaction_id", positions)
    stripe_like = pd.Series(ids, dtype=object).str.startswith(STRIPE_ID_PREFIXES, na=False)
    return positions[~stripe_like.to_numpy(dtype=bool)]


def _candidates(
    entries: Side,
    rows: Side,
    entry_ids: IntArray,
    row_ids: IntArray,
    match_window: timedelta,
) -> pd.DataFrame:
    """Return (entry, row, gap) pairs that share the match keys within the window, nearest first.

    Only mapped entries and rows with a company and subscription take part.
    """
    company = entries.codes["company_id"]
    subscription = entries.codes["subscription_id"]
    entry_ids = entry_ids[(company[entry_ids] >= 0) & (subscription[entry_ids] >= 0)]
    row_company = row_codes(entries, rows, "company_id", row_ids)
    row_subscription = row_codes(entries, rows, "subscription_id", row_ids)
    keep = (row_company >= 0) & (row_subscription >= 0)
    left = pd.DataFrame(
        {
            "_e": entry_ids,
            "_company": company[entry_ids],
            "_subscription": subscription[entry_ids],
            "_kind": entries.kind[entry_ids],
            "_amount": entries.amount[entry_ids],
        }
    )
    row_ids = row_ids[keep]
    right = pd.DataFrame(
        {
            "_l": row_ids,
            "_company": row_company[keep],
            "_subscription": row_subscription[keep],
            "_kind": rows.kind[row_ids],
            "_amount": rows.amount[row_ids],
        }
    )
    pairs = left.merge(right, on=_MATCH_CODES)
    entry_ids, row_ids = pairs["_e"].to_numpy(), pairs["_l"].to_numpy()
    gaps = np.abs(entries.time[entry_ids] - rows.time[row_ids])
    near = gaps <= match_window // MICROSECOND
    entry_ids, row_ids, gaps = entry_ids[near], row_ids[near], gaps[near]
    order = np.lexsort((row_ids, entry_ids, gaps))
    return pd.DataFrame({"_e": entry_ids[order], "_l": row_ids[order], "_gap": gaps[order]})


_MATCH_CODES = ["_company", "_subscription", "_kind", "_amount"]


def _one_to_one(entry_ids: IntArray, row_ids: IntArray) -> BoolArray:
    """Walk candidate pairs (already nearest first) once; keep a pair when both sides are free.

    A pair whose entry and row appear in no other pair is kept outright; only the contested
    pairs are walked in order.
    """
    lone_entry = ~pd.Series(entry_ids).duplicated(keep=False).to_numpy()
    lone_row = ~pd.Series(row_ids).duplicated(keep=False).to_numpy()
    chosen = lone_entry & lone_row
    taken_entries: set[int] = set()
    taken_rows: set[int] = set()
    contested = np.flatnonzero(~chosen)
    for position, entry, row in zip(
        contested.tolist(),
        entry_ids[contested].tolist(),
        row_ids[contested].tolist(),
        strict=True,
    ):
        if entry in taken_entries or row in taken_rows:
            continue
        taken_entries.add(entry)
        taken_rows.add(row)
        chosen[position] = True
    return chosen


def repeated_rows(
    entries: Side,
    rows: Side,
    exact: pd.DataFrame,
    matched: pd.DataFrame,
    paired_rows: BoolArray,
    match_window: timedelta,
) -> pd.DataFrame:
    """Return (entry, row) for leftover rows that repeat a matched movement (rule 3).

    A leftover row repeats a movement when it carries the movement's transaction id, or when it
    carries no Stripe id and would have matched the movement by amount (the nearest one wins).
    """
    by_id = exact.loc[~exact["_primary"], PAIR]
    leftover = np.flatnonzero(~paired_rows & ~mask(len(rows.time), matched["_l"]))
    movements = np.flatnonzero(mask(len(entries.time), matched["_e"]))
    nearest = _candidates(entries, rows, movements, _anonymous(rows, leftover), match_window)
    by_amount = nearest.drop_duplicates("_l", keep="first")[PAIR]
    duplicates = pd.concat([by_id, by_amount], ignore_index=True)
    counts = duplicates.groupby("_e")["_l"].transform("size")
    return duplicates.assign(_rows=counts.astype("int64") + 1)
