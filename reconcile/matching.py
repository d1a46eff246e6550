"""The reconciliation rules: match expected Stripe entries to the Moesif ledger, name the drift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reconcile.domain import (
    EXPECTED_COLUMNS,
    FINDING_COLUMNS,
    LEDGER_COLUMNS,
    STRIPE_ID_PREFIXES,
    Action,
    Category,
    EntryType,
    is_stripe_id,
)
from reconcile.money import format_major
from reconcile.times import Window

__all__ = ["STRIPE_ID_PREFIXES", "finding_records", "is_stripe_id", "match", "postable"]

DRIFTING_TYPES = (EntryType.CREDIT.value, EntryType.DEBIT.value)
"""Ledger types that mirror Stripe; promotions, adjustments and usage are Moesif's own."""

MATCH_KEYS = ["company_id", "subscription_id", "entry_type", "amount_minor"]
"""What a ledger row without a Stripe id must share with an entry to match it by amount."""

_TEXT_COLUMNS = [
    column for column in FINDING_COLUMNS if not column.endswith(("_amount_minor", "_created_at"))
]
_AMOUNT_COLUMNS = ["stripe_amount_minor", "moesif_amount_minor"]
_TIME_COLUMNS = ["stripe_created_at", "moesif_created_at"]
_CATEGORY_RANK = {category.value: rank for rank, category in enumerate(Category)}
_SORT = ["_rank", "stripe_created_at", "moesif_created_at", "transaction_id", "moesif_id"]
_PAIR = ["_e", "_l"]


def match(
    expected: pd.DataFrame,
    ledger: pd.DataFrame,
    *,
    window: Window,
    match_window: timedelta,
    subscription_currency: Mapping[str, str | None],
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

    Returns:
        The findings frame (``FINDING_COLUMNS``): text cells ``str`` or ``None``, amounts
        nullable ``Int64`` minor units, times aware UTC; sorted by category, time and id.

    Raises:
        ValueError: a frame lacks a column or holds naive times.
    """
    entries = _prepare(expected, EXPECTED_COLUMNS, "expected", ["created_at", "transaction_id"])
    rows = _prepare_ledger(ledger)
    entries["_in_window"] = _inside(entries["created_at"], window)
    rows["_in_window"] = _inside(rows["created_at"], window)

    exact = _exact_pairs(entries, rows)
    primary = exact.loc[exact["_primary"], _PAIR]
    by_amount = _amount_pairs(
        entries[~entries["_e"].isin(primary["_e"])],
        rows[~rows["_l"].isin(exact["_l"])],
        match_window,
    )
    matched = pd.concat([primary, by_amount[_PAIR]], ignore_index=True)
    duplicates = _duplicates(entries, rows, exact, matched, match_window)
    return _finalise(
        [
            _amount_mismatches(entries, rows, exact),
            _matched_by_amount(entries, rows, by_amount),
            _duplicate_findings(entries, rows, duplicates),
            _missing_in_stripe(rows, pd.concat([matched["_l"], duplicates["_l"]])),
            _unmatched(entries[~entries["_e"].isin(matched["_e"])], subscription_currency),
            _matched_currency_mismatches(entries, rows, matched, subscription_currency),
        ]
    )


def postable(findings: pd.DataFrame) -> pd.DataFrame:
    """Return the ``missing_in_moesif`` findings: the credits and debits a run should post."""
    missing = findings["category"] == Category.MISSING_IN_MOESIF.value
    return findings.loc[missing].reset_index(drop=True)


def finding_records(findings: pd.DataFrame) -> list[dict[str, Any]]:
    """Return findings as plain dicts (``None``, ``int``, aware ``datetime``), e.g. for the DB."""
    records: list[dict[str, Any]] = []
    for row in findings.reindex(columns=FINDING_COLUMNS).itertuples(index=False):
        records.append(
            {name: _plain(value) for name, value in zip(FINDING_COLUMNS, row, strict=True)}
        )
    return records


# --- preparing the inputs -------------------------------------------------------------------


def _prepare(frame: pd.DataFrame, columns: list[str], name: str, order: list[str]) -> pd.DataFrame:
    """Return a normalised copy sorted by content, so shuffled input gives the same positions."""
    absent = [column for column in columns if column not in frame.columns]
    if absent:
        raise ValueError(f"the {name} frame lacks columns: {', '.join(absent)}")
    prepared = frame[columns].copy()
    for column in columns:
        if column == "created_at":
            prepared[column] = _utc(prepared[column], name)
        elif column == "amount_minor":
            prepared[column] = prepared[column].astype("int64")
        else:
            prepared[column] = _text(prepared[column])
    prepared = prepared.sort_values(order, kind="mergesort")
    prepared = prepared.drop_duplicates(order[-1], keep="first").reset_index(drop=True)
    prepared["_e" if name == "expected" else "_l"] = np.arange(len(prepared), dtype="int64")
    return prepared


def _prepare_ledger(ledger: pd.DataFrame) -> pd.DataFrame:
    """Keep only credits and debits; mark rows whose id names a Stripe movement."""
    rows = _prepare(ledger, LEDGER_COLUMNS, "ledger", ["created_at", "moesif_id"])
    rows = rows[rows["entry_type"].isin(DRIFTING_TYPES)].reset_index(drop=True)
    rows["_l"] = np.arange(len(rows), dtype="int64")
    rows["_stripe_like"] = rows["transaction_id"].str.startswith(STRIPE_ID_PREFIXES, na=False)
    return rows


def _text(column: pd.Series) -> pd.Series:
    """Return a text column as Python ``str`` or ``None`` (empty strings count as absent)."""
    values = column.to_numpy(dtype=object)
    absent = pd.isna(values) | (values == "")
    strings = column.astype(str).to_numpy(dtype=object)
    strings[absent] = None
    return pd.Series(strings, index=column.index, dtype=object)


def _utc(column: pd.Series, name: str) -> pd.Series:
    """Return a time column as aware UTC; refuse naive times."""
    if isinstance(column.dtype, np.dtype) and column.dtype.kind == "M":
        raise ValueError(f"the {name} frame holds naive created_at times")
    if column.dtype == object and any(
        getattr(value, "tzinfo", True) is None for value in column.tolist()
    ):
        raise ValueError(f"the {name} frame holds naive created_at times")
    return pd.to_datetime(column, utc=True).astype("datetime64[us, UTC]")


def _inside(times: pd.Series, window: Window) -> pd.Series:
    """Return which times fall in the half-open window."""
    since, until = pd.Timestamp(window.since), pd.Timestamp(window.until)
    return (times >= since) & (times < until)


# --- rules 1 to 3: pairing ------------------------------------------------------------------


def _exact_pairs(entries: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Pair entries with every row carrying their transaction id; mark one primary per entry.

    The primary row is the first that agrees in type and amount, else the earliest.
    """
    keys = ["transaction_id", "entry_type", "amount_minor"]
    pairs = entries[["_e", *keys]].merge(
        rows[["_l", *keys]], on="transaction_id", suffixes=("_s", "_m")
    )
    pairs["_agrees"] = (pairs["entry_type_s"] == pairs["entry_type_m"]) & (
        pairs["amount_minor_s"] == pairs["amount_minor_m"]
    )
    pairs = pairs.sort_values(["_e", "_agrees", "_l"], ascending=[True, False, True])
    pairs["_primary"] = ~pairs.duplicated("_e")
    return pairs[["_e", "_l", "_primary", "_agrees"]].reset_index(drop=True)


def _amount_pairs(
    entries: pd.DataFrame, rows: pd.DataFrame, match_window: timedelta
) -> pd.DataFrame:
    """Pair mapped entries with rows that carry no Stripe id: one to one, nearest first."""
    mapped = entries[entries["company_id"].notna() & entries["subscription_id"].notna()]
    anonymous = rows[~rows["_stripe_like"]]
    candidates = _candidates(mapped, anonymous, match_window)
    chosen = _one_to_one(candidates["_e"].to_numpy(), candidates["_l"].to_numpy())
    return candidates.loc[chosen].reset_index(drop=True)


def _candidates(entries: pd.DataFrame, rows: pd.DataFrame, match_window: timedelta) -> pd.DataFrame:
    """Return (entry, row, gap) pairs that share the match keys within the window, nearest first."""
    rows = rows[rows["company_id"].notna() & rows["subscription_id"].notna()]
    pairs = entries[["_e", "created_at", *MATCH_KEYS]].merge(
        rows[["_l", "created_at", *MATCH_KEYS]], on=MATCH_KEYS, suffixes=("_s", "_m")
    )
    pairs["_gap"] = (pairs["created_at_s"] - pairs["created_at_m"]).abs()
    pairs = pairs[pairs["_gap"] <= pd.Timedelta(match_window)]
    return pairs.sort_values(["_gap", "_e", "_l"], kind="mergesort")[["_e", "_l", "_gap"]]


def _one_to_one(
    entry_ids: npt.NDArray[np.int64], row_ids: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Walk candidate pairs (already nearest first) once; keep a pair when both sides are free."""
    chosen = np.zeros(len(entry_ids), dtype=bool)
    taken_entries: set[int] = set()
    taken_rows: set[int] = set()
    for position, (entry, row) in enumerate(zip(entry_ids.tolist(), row_ids.tolist(), strict=True)):
        if entry in taken_entries or row in taken_rows:
            continue
        taken_entries.add(entry)
        taken_rows.add(row)
        chosen[position] = True
    return chosen


def _duplicates(
    entries: pd.DataFrame,
    rows: pd.DataFrame,
    exact: pd.DataFrame,
    matched: pd.DataFrame,
    match_window: timedelta,
) -> pd.DataFrame:
    """Return (entry, row) for leftover rows that repeat a matched movement (rule 3).

    A leftover row repeats a movement when it carries the movement's transaction id, or when it
    carries no Stripe id and would have matched the movement by amount (the nearest one wins).
    """
    by_id = exact.loc[~exact["_primary"], _PAIR]
    leftover = rows[~rows["_l"].isin(matched["_l"]) & ~rows["_l"].isin(exact["_l"])]
    movements = entries[entries["_e"].isin(matched["_e"])]
    nearest = _candidates(movements, leftover[~leftover["_stripe_like"]], match_window)
    by_amount = nearest.drop_duplicates("_l", keep="first")[_PAIR]
    duplicates = pd.concat([by_id, by_amount], ignore_index=True)
    counts = duplicates.groupby("_e")["_l"].transform("size")
    return duplicates.assign(_rows=counts.astype("int64") + 1)


# --- the findings ---------------------------------------------------------------------------


def _amount_mismatches(
    entries: pd.DataFrame, rows: pd.DataFrame, exact: pd.DataFrame
) -> pd.DataFrame:
    """Rule 1: the primary row of an entry differs in amount or type."""
    pairs = exact[exact["_primary"] & ~exact["_agrees"]]
    entry, row = _sides(entries, rows, pairs)
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
    return _findings(Category.AMOUNT_MISMATCH, Action.FLAGGED, entry, row, details)


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


def _matched_by_amount(
    entries: pd.DataFrame, rows: pd.DataFrame, pairs: pd.DataFrame
) -> pd.DataFrame:
    """Rule 2: informational findings for entries matched without a Stripe id."""
    entry, row = _sides(entries, rows, pairs)
    keep = entry["_in_window"].to_numpy()
    gaps = pairs["_gap"].to_numpy()[keep]
    entry, row = entry[keep].reset_index(drop=True), row[keep].reset_index(drop=True)
    details = [
        f"ledger row has no Stripe id; matched by amount, {_apart(gap)} apart" for gap in gaps
    ]
    return _findings(Category.MATCHED_BY_AMOUNT, Action.NONE, entry, row, details)


def _apart(gap: np.timedelta64) -> str:
    """Format a time gap as ``45s``, ``12m`` or ``3h05m``."""
    seconds = int(pd.Timedelta(gap).total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _duplicate_findings(
    entries: pd.DataFrame, rows: pd.DataFrame, duplicates: pd.DataFrame
) -> pd.DataFrame:
    """Rule 3: a row that repeats a matched movement; reported if either side is in the window."""
    entry, row = _sides(entries, rows, duplicates)
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
    return _findings(Category.DUPLICATE_IN_MOESIF, Action.FLAGGED, entry, row, details)


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


def _missing_in_stripe(rows: pd.DataFrame, explained: pd.Series) -> pd.DataFrame:
    """Rule 3: a credit or debit inside the window that no Stripe movement explains."""
    row = rows[rows["_in_window"] & ~rows["_l"].isin(explained)].reset_index(drop=True)
    details = [
        _unexplained(*values)
        for values in zip(row["entry_type"], row["transaction_id"], row["description"], strict=True)
    ]
    return _findings(Category.MISSING_IN_STRIPE, Action.FLAGGED, None, row, details)


def _unexplained(entry_type: str, transaction_id: str | None, description: str | None) -> str:
    """Say why a ledger row is unexplained, with its description when it has one."""
    if transaction_id and is_stripe_id(transaction_id):
        text = f"no Stripe movement {transaction_id} in the window for this {entry_type}"
    else:
        text = f"no Stripe movement for this {entry_type}"
    if description:
        text += f"; description: {description[:80]}"
    return text


def _unmatched(entries: pd.DataFrame, currencies: Mapping[str, str | None]) -> pd.DataFrame:
    """Rule 4: entries without a ledger row are unmapped, in the wrong currency, or to post."""
    entry = entries[entries["_in_window"]].reset_index(drop=True)
    unmapped = (entry["company_id"].isna() | entry["subscription_id"].isna()).to_numpy()
    looked_up, known = _subscription_currency(entry, currencies)
    not_found = ~unmapped & looked_up & known.isna().to_numpy()
    mismatch = ~unmapped & _differs(entry, known)
    to_post = ~(unmapped | not_found | mismatch)
    reasons = entry["unmapped_reason"].fillna("no single Moesif company/subscription")
    return pd.concat(
        [
            _findings(
                Category.UNMAPPED_CUSTOMER,
                Action.FLAGGED,
                entry[unmapped],
                None,
                reasons[unmapped].tolist(),
            ),
            _findings(
                Category.UNMAPPED_CUSTOMER,
                Action.FLAGGED,
                entry[not_found],
                None,
                [
                    f"subscription {sub} not found in Moesif"
                    for sub in entry["subscription_id"][not_found]
                ],
            ),
            _currency_findings(entry[mismatch], None, known[mismatch], posted=False),
            _missing_in_moesif(entry[to_post]),
        ],
        ignore_index=True,
    )


def _missing_in_moesif(entry: pd.DataFrame) -> pd.DataFrame:
    """Rule 4: a mapped entry with no ledger row, which the run should post."""
    details = [
        f"no ledger row; {entry_type} of {format_major(minor, currency)} {currency.upper()}"
        for entry_type, minor, currency in zip(
            entry["entry_type"], entry["amount_minor"], entry["currency"], strict=True
        )
    ]
    return _findings(Category.MISSING_IN_MOESIF, Action.WOULD_POST, entry, None, details)


def _matched_currency_mismatches(
    entries: pd.DataFrame,
    rows: pd.DataFrame,
    matched: pd.DataFrame,
    currencies: Mapping[str, str | None],
) -> pd.DataFrame:
    """Rule 4: a matched entry whose currency differs from its subscription's known currency."""
    inside = entries["_in_window"].to_numpy()[matched["_e"].to_numpy()]
    entry, row = _sides(entries, rows, matched[inside])
    _, known = _subscription_currency(entry, currencies)
    keep = _differs(entry, known)
    return _currency_findings(entry[keep], row[keep], known[keep], posted=True)


def _currency_findings(
    entry: pd.DataFrame, row: pd.DataFrame | None, known: pd.Series, *, posted: bool
) -> pd.DataFrame:
    """Build currency_mismatch findings, saying whether the ledger holds the movement."""
    note = "ledger holds it" if posted else "not posted"
    details = [
        f"payment in {currency.upper()}, subscription {sub} in {str(theirs).upper()}; {note}"
        for currency, sub, theirs in zip(
            entry["currency"], entry["subscription_id"], known, strict=True
        )
    ]
    return _findings(Category.CURRENCY_MISMATCH, Action.FLAGGED, entry, row, details)


def _subscription_currency(
    entry: pd.DataFrame, currencies: Mapping[str, str | None]
) -> tuple[npt.NDArray[np.bool_], pd.Series]:
    """Return whether each entry's subscription was looked up, and its currency if known."""
    lookup = pd.Series(list(currencies.values()), index=list(currencies.keys()), dtype=object)
    subscriptions = entry["subscription_id"]
    looked_up = subscriptions.isin(lookup.index).to_numpy(dtype=bool)
    known = subscriptions.map(lookup).astype(object)
    return looked_up, known.where(known.notna(), None)


def _differs(entry: pd.DataFrame, known: pd.Series) -> npt.NDArray[np.bool_]:
    """Return where a known subscription currency differs from the entry's currency."""
    theirs = known.str.lower()
    ours = entry["currency"].str.lower()
    return (theirs.notna() & (theirs != ours)).to_numpy(dtype=bool)


def _sides(
    entries: pd.DataFrame, rows: pd.DataFrame, pairs: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the entries and rows of (entry, row) pairs, aligned position by position."""
    entry = entries.iloc[pairs["_e"].to_numpy()].reset_index(drop=True)
    row = rows.iloc[pairs["_l"].to_numpy()].reset_index(drop=True)
    return entry, row


def _findings(
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


def _finalise(parts: list[pd.DataFrame]) -> pd.DataFrame:
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


def _plain(value: object) -> object:
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
