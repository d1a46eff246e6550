"""Building the findings of pairs and leftovers (rules 1 to 3), and the findings frame."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from reconcile.domain.ids import is_stripe_id
from reconcile.domain.money import format_major
from reconcile.domain.values import FINDING_COLUMNS
from reconcile.domain.vocab import Action, Category
from reconcile.matching.sides import IntArray, Side
from reconcile.rules.destination import account

_TEXT_COLUMNS = [
    column for column in FINDING_COLUMNS if not column.endswith(("_amount_minor", "_created_at"))
]

_AMOUNT_COLUMNS = ["stripe_amount_minor", "moesif_amount_minor"]

_TIME_COLUMNS = ["stripe_created_at", "moesif_created_at"]

_CATEGORY_RANK = {category.value: rank for rank, category in enumerate(Category)}

_SORT = ["_rank", "stripe_created_at", "moesif_created_at", "transaction_id", "moesif_id"]


def misapplied(entries: Side, rows: Side, misplaced: pd.DataFrame) -> pd.DataFrame:
    """Rule 1: a row names the movement on another account; reported if either is in the window.

    Its ``delta`` takes the row's amount back from where it sits; the movement's own
    ``missing_in_moesif`` finding (flagged, not posted) carries it where it belongs.
    """
    entry, row = pair_sides(entries, rows, misplaced)
    keep = (entry["_in_window"] | row["_in_window"]).to_numpy()
    entry, row = entry[keep].reset_index(drop=True), row[keep].reset_index(drop=True)
    details = [
        f"ledger row {moesif_id} carries {tid} on {account(row_company, row_sub)}; "
        f"it belongs on {account(company, sub)}; nothing posted automatically"
        for moesif_id, tid, row_company, row_sub, company, sub in zip(
            row["moesif_id"],
            entry["transaction_id"],
            row["company_id"],
            row["subscription_id"],
            entry["company_id"],
            entry["subscription_id"],
            strict=True,
        )
    ]
    found = finding_rows(Category.MISAPPLIED, Action.FLAGGED, entry, row, details)
    # Reported where the row sits, whose balance it wrongly raises (the detail names both).
    for column in ("company_id", "subscription_id"):
        found[column] = row[column].to_numpy(dtype=object)
    return found


def amount_mismatches(entries: Side, rows: Side, exact: pd.DataFrame) -> pd.DataFrame:
    """Rule 1: the primary row of an entry differs in amount or type."""
    pairs = exact[exact["_primary"] & ~exact["_agrees"]]
    entry, row = pair_sides(entries, rows, pairs)
    keep = entry["_in_window"].to_numpy()
    entry, row = entry[keep].reset_index(drop=True), row[keep].reset_index(drop=True)
    details = [
        _difference(*values)
        for values in zip(
            entry["entry_type"],
            row["entry_type"],
            entry["amount_minor"],
            row["amount_minor"],
            entry["currency"],
            strict=True,
        )
    ]
    return finding_rows(Category.AMOUNT_MISMATCH, Action.FLAGGED, entry, row, details)


def _difference(
    stripe_type: str, moesif_type: str, stripe_minor: int, moesif_minor: int, currency: str
) -> str:
    """Say how a matched row differs from its Stripe movement."""
    parts = []
    if stripe_minor != moesif_minor:
        moesif, stripe = format_major(moesif_minor, currency), format_major(stripe_minor, currency)
        parts.append(f"Moesif holds {moesif}, Stripe {stripe}")
    if stripe_type != moesif_type:
        parts.append(f"Moesif has a {moesif_type}, Stripe a {stripe_type}")
    return "; ".join(parts)


def matched_by_amount(entries: Side, rows: Side, pairs: pd.DataFrame) -> pd.DataFrame:
    """Rule 2: informational findings for entries matched without a Stripe id."""
    entry, row = pair_sides(entries, rows, pairs)
    keep = entry["_in_window"].to_numpy()
    gaps = pairs["_gap"].to_numpy()[keep]
    entry, row = entry[keep].reset_index(drop=True), row[keep].reset_index(drop=True)
    details = [
        f"ledger row has no Stripe id; matched by amount, {_apart(gap)} apart" for gap in gaps
    ]
    return finding_rows(Category.MATCHED_BY_AMOUNT, Action.NONE, entry, row, details)


def _apart(gap: int) -> str:
    """Format a time gap in microseconds as ``45s``, ``12m`` or ``3h05m``."""
    seconds = int(gap) // 1_000_000
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def duplicate_findings(entries: Side, rows: Side, duplicates: pd.DataFrame) -> pd.DataFrame:
    """Rule 3: a row that repeats a matched movement; reported if either side is in the window."""
    entry, row = pair_sides(entries, rows, duplicates)
    keep = (entry["_in_window"] | row["_in_window"]).to_numpy()
    counts = duplicates["_rows"].to_numpy()[keep]
    entry, row = entry[keep].reset_index(drop=True), row[keep].reset_index(drop=True)
    details = [
        _repeats(*values)
        for values in zip(
            counts,
            entry["transaction_id"],
            entry["stripe_object_id"],
            row["transaction_id"],
            strict=True,
        )
    ]
    return finding_rows(Category.DUPLICATE_IN_MOESIF, Action.FLAGGED, entry, row, details)


def _repeats(count: int, transaction_id: str, stripe_object_id: str, row_id: str | None) -> str:
    """Say how many ledger rows one Stripe movement has, and what id this extra row carries."""
    text = f"{count} ledger rows for {transaction_id}"
    if stripe_object_id != transaction_id:
        text += f" (Stripe {stripe_object_id})"
    if row_id is None:
        return text + "; this row has no transaction id"
    if row_id != transaction_id:
        return text + f"; this row has transaction id {row_id}"
    return text


def missing_in_stripe(rows: Side, unexplained: IntArray) -> pd.DataFrame:
    """Rule 3: a credit or debit inside the window that no Stripe movement explains."""
    row = rows.take(unexplained)
    details = [
        _unexplained(*values)
        for values in zip(row["entry_type"], row["transaction_id"], row["description"], strict=True)
    ]
    return finding_rows(Category.MISSING_IN_STRIPE, Action.FLAGGED, None, row, details)


def _unexplained(entry_type: str, transaction_id: str | None, description: str | None) -> str:
    """Say why a ledger row is unexplained, with its description when it has one."""
    if transaction_id and is_stripe_id(transaction_id):
        text = f"no Stripe movement {transaction_id} in the window for this {entry_type}"
    else:
        text = f"no Stripe movement for this {entry_type}"
    if description:
        text += f"; description: {description[:80]}"
    return text


def pair_sides(entries: Side, rows: Side, pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the entries and rows of (entry, row) pairs, aligned position by position."""
    return entries.take(pairs["_e"].to_numpy()), rows.take(pairs["_l"].to_numpy())


def finding_rows(
    category: Category,
    action: Action,
    entry: pd.DataFrame | None,
    row: pd.DataFrame | None,
    details: Sequence[str],
) -> pd.DataFrame:
    """Build finding rows from aligned entries and/or ledger rows."""
    columns: dict[str, Any] = {
        "category": [category.value] * len(details),
        "action": [action.value] * len(details),
        "detail": list(details),
    }
    if row is not None:
        columns |= _ledger_side(row)
    if entry is not None:
        columns |= _entry_side(entry)
    return pd.DataFrame(columns).reindex(columns=FINDING_COLUMNS)


def _entry_side(entry: pd.DataFrame) -> dict[str, Any]:
    """Return the finding columns an expected entry fills."""
    names = ["company_id", "subscription_id", "stripe_customer_id", "stripe_object_id"]
    names += ["transaction_id", "entry_type", "currency"]
    columns: dict[str, Any] = {name: entry[name].to_numpy(dtype=object) for name in names}
    columns["stripe_amount_minor"] = entry["amount_minor"].to_numpy()
    columns["stripe_created_at"] = entry["created_at"].array
    return columns


def _ledger_side(row: pd.DataFrame) -> dict[str, Any]:
    """Return the finding columns a ledger row fills (the entry's, if any, take precedence)."""
    names = ["company_id", "subscription_id", "transaction_id", "entry_type", "currency"]
    columns: dict[str, Any] = {name: row[name].to_numpy(dtype=object) for name in names}
    columns["moesif_id"] = row["moesif_id"].to_numpy(dtype=object)
    columns["moesif_amount_minor"] = row["amount_minor"].to_numpy()
    columns["moesif_created_at"] = row["created_at"].array
    return columns


def finalise(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate findings, fix the column types and sort them deterministically."""
    present = [part for part in parts if len(part)]
    if present:
        frame = pd.concat(present, ignore_index=True)
    else:
        frame = pd.DataFrame({column: [] for column in FINDING_COLUMNS})
    for column in _TEXT_COLUMNS:
        values = frame[column].astype(object)
        frame[column] = values.where(values.notna(), None)
    for column in _AMOUNT_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    for column in _TIME_COLUMNS:
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    frame["_rank"] = frame["category"].map(_CATEGORY_RANK)
    frame = frame.sort_values(_SORT, kind="mergesort", na_position="last")
    return frame[FINDING_COLUMNS].reset_index(drop=True)


def plain(value: object) -> object:
    """Return a cell as a plain Python value: ``None`` for any missing marker."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
