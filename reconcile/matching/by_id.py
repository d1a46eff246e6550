"""Rule 1's pairing: entries with the ledger rows that carry their transaction id."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from reconcile.matching.sides import BoolArray, IntArray, Side, absent_text, row_codes, text_values
from reconcile.rules.destination import Placed


def exact_pairs(entries: Side, rows: Side) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pair entries with every row carrying their transaction id; mark one primary per entry.

    The primary row is the first that agrees in type and amount, else the earliest. A row on
    another company or subscription than its mapped entry is no pair: it is returned apart,
    as (entry, row) pairs that are ``misapplied``.
    """
    entry_codes, row_codes = entries.codes["transaction_id"], rows.codes["transaction_id"]
    present = entry_codes >= 0
    entry_of = np.full(len(entries.names["transaction_id"]) + 1, -1, dtype="int64")
    entry_of[entry_codes[present]] = np.flatnonzero(present)
    if not present.all():  # an entry without an id pairs with rows without one (equal keys)
        entry_of[-1] = np.flatnonzero(~present)[0]
    partner = entry_of[row_codes]  # code -1 reads the last cell
    if not present.all():
        ids = text_values(rows.frame["transaction_id"].iloc[rows.source])
        partner[(row_codes < 0) & ~absent_text(ids)] = -1
    row_ids = np.flatnonzero(partner >= 0)
    entry_ids = partner[row_ids]
    elsewhere = _elsewhere(entries, rows, entry_ids, row_ids)
    misplaced = pd.DataFrame({"_e": entry_ids[elsewhere], "_l": row_ids[elsewhere]})
    entry_ids, row_ids = entry_ids[~elsewhere], row_ids[~elsewhere]
    agrees = (entries.kind[entry_ids] == rows.kind[row_ids]) & (
        entries.amount[entry_ids] == rows.amount[row_ids]
    )
    order = np.lexsort((row_ids, ~agrees, entry_ids))
    entry_ids, row_ids, agrees = entry_ids[order], row_ids[order], agrees[order]
    primary = np.ones(len(entry_ids), dtype=bool)
    primary[1:] = entry_ids[1:] != entry_ids[:-1]
    pairs = pd.DataFrame({"_e": entry_ids, "_l": row_ids, "_primary": primary, "_agrees": agrees})
    return pairs, misplaced


def _elsewhere(entries: Side, rows: Side, entry_ids: IntArray, row_ids: IntArray) -> BoolArray:
    """Return where a row sits on another company or subscription than its mapped entry."""
    company = entries.codes["company_id"][entry_ids]
    subscription = entries.codes["subscription_id"][entry_ids]
    mapped = (company >= 0) & (subscription >= 0)
    elsewhere: BoolArray = mapped & (
        (row_codes(entries, rows, "company_id", row_ids) != company)
        | (row_codes(entries, rows, "subscription_id", row_ids) != subscription)
    )
    return elsewhere


def carried_elsewhere(rows: Side, misplaced: pd.DataFrame, size: int) -> npt.NDArray[np.object_]:
    """Return, per entry, the first ledger row carrying it on another account (``None``: none)."""
    carried = np.full(size, None, dtype=object)
    if misplaced.empty:
        return carried
    first = misplaced.drop_duplicates("_e")
    positions = first["_l"].to_numpy()
    for entry, moesif_id, company, subscription in zip(
        first["_e"].to_numpy(),
        rows.text("moesif_id", positions),
        rows.text("company_id", positions),
        rows.text("subscription_id", positions),
        strict=True,
    ):
        carried[entry] = Placed(str(moesif_id), company, subscription)
    return carried
