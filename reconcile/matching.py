"""The reconciliation rules: match expected Stripe entries to the Moesif ledger, name the drift."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

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
from reconcile.rules.destination import (
    UNCHECKED,
    Movement,
    Placed,
    Subscription,
    Verdict,
    account,
    destination,
)
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

    Returns:
        The findings frame (``FINDING_COLUMNS``): text cells ``str`` or ``None``, amounts
        nullable ``Int64`` minor units, times aware UTC; sorted by category, time and id.

    Raises:
        ValueError: a frame lacks a column or holds naive times.
    """
    entries = _side(expected, EXPECTED_COLUMNS, "expected", "transaction_id", window, recheck)
    rows = _side(ledger, LEDGER_COLUMNS, "ledger", "moesif_id", window, recheck)
    rows = _drifting(rows)
    _share_keys(entries, rows)

    exact, misplaced = _exact_pairs(entries, rows)
    primary = exact.loc[exact["_primary"], _PAIR]
    paired_rows = _mask(len(rows.time), pd.concat([exact["_l"], misplaced["_l"]]))
    by_amount = _amount_pairs(
        entries,
        rows,
        ~_mask(len(entries.time), primary["_e"]),
        ~paired_rows,
        match_window,
    )
    matched = pd.concat([primary, by_amount[_PAIR]], ignore_index=True)
    duplicates = _duplicates(entries, rows, exact, matched, paired_rows, match_window)
    matched_entries = _mask(len(entries.time), matched["_e"])
    explained = _mask(len(rows.time), pd.concat([matched["_l"], duplicates["_l"], misplaced["_l"]]))
    unmatched = np.flatnonzero(entries.inside & ~matched_entries)
    carried = _carried(rows, misplaced, len(entries.time))[unmatched]
    return _finalise(
        [
            _misapplied(entries, rows, misplaced),
            _amount_mismatches(entries, rows, exact),
            _matched_by_amount(entries, rows, by_amount),
            _duplicate_findings(entries, rows, duplicates),
            _missing_in_stripe(rows, np.flatnonzero(rows.inside & ~explained)),
            _unmatched(
                entries.take(unmatched).assign(_carried=carried),
                subscription_currency,
                subscription_company or {},
            ),
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
#
# Each side is kept as integer arrays in content order (time, then id): times in microseconds,
# amounts, and small integer codes for the text keys. Text is normalised (``None`` for absent or
# empty) only for the few rows that become findings.


class _Side(NamedTuple):
    """One input in content order: where each position came from, and its keys as integers."""

    frame: pd.DataFrame
    columns: list[str]
    name: str
    source: IntArray
    """Position in ``frame`` of each entry or row, in content order, duplicates dropped."""
    time: IntArray
    """``created_at`` in microseconds since the epoch."""
    amount: IntArray
    kind: IntArray
    """``entry_type`` as an index into ``_KINDS``, -1 for any other or absent type."""
    inside: BoolArray
    codes: dict[str, IntArray]
    """Integer codes of text keys, filled by ``_share_keys`` (-1 where absent)."""
    names: dict[str, npt.NDArray[np.object_]]
    """The text each code of ``codes`` stands for (the entries' own values)."""
    lookup: dict[str, pd.Index]
    """``names`` as an index, built once when rows are looked up in it."""

    def take(self, positions: IntArray) -> pd.DataFrame:
        """Return these positions as a normalised frame, with ``_in_window``."""
        frame = self.frame.iloc[self.source[positions]][self.columns].reset_index(drop=True)
        for column in self.columns:
            if column == "created_at":
                frame[column] = _utc(frame[column], self.name)
            elif column == "amount_minor":
                frame[column] = frame[column].astype("int64")
            else:
                frame[column] = _text(frame[column])
        frame["_in_window"] = self.inside[positions]
        return frame

    def text(self, column: str, positions: IntArray) -> npt.NDArray[np.object_]:
        """Return one text column's normalised values at these positions."""
        values = self.frame[column].iloc[self.source[positions]].reset_index(drop=True)
        return _text(values).to_numpy(dtype=object)


IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_KINDS = [kind.value for kind in EntryType]
_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _side(
    frame: pd.DataFrame,
    columns: list[str],
    name: str,
    key: str,
    window: Window,
    recheck: Collection[str] = (),
) -> _Side:
    """Check a frame, order it by content (time, then ``key``) and drop repeated ``key``s.

    A position counts as inside the window when its time is, or its ``key`` is in ``recheck``.
    """
    absent = [column for column in columns if column not in frame.columns]
    if absent:
        raise ValueError(f"the {name} frame lacks columns: {', '.join(absent)}")
    times = _utc(frame["created_at"], name).array.asi8.astype("int64")
    amounts: IntArray = np.asarray(frame["amount_minor"].astype("int64"), dtype=np.int64)
    ids, codes, names = _keys(frame[key])
    order = _content_order(times, ids, codes)
    kept = order[_first_of_each(codes[order])]
    since = (window.since - _EPOCH) // _MICROSECOND
    until = (window.until - _EPOCH) // _MICROSECOND
    return _Side(
        frame=frame,
        columns=columns,
        name=name,
        source=kept,
        time=times[kept],
        amount=amounts[kept],
        kind=_kind_codes(frame["entry_type"])[kept],
        inside=((times[kept] >= since) & (times[kept] < until))
        | (pd.Index(ids[kept], dtype=object).isin(list(recheck)) if recheck else False),
        codes={key: codes[kept]},
        names={key: names},
        lookup={},
    )


def _drifting(rows: _Side) -> _Side:
    """Keep only credits and debits: the ledger rows that mirror Stripe."""
    keep = np.flatnonzero(np.isin(rows.kind, [_KINDS.index(kind) for kind in DRIFTING_TYPES]))
    return rows._replace(
        source=rows.source[keep],
        time=rows.time[keep],
        amount=rows.amount[keep],
        kind=rows.kind[keep],
        inside=rows.inside[keep],
    )


def _share_keys(entries: _Side, rows: _Side) -> None:
    """Code the entries' text keys, and the rows' transaction ids by the entries' values.

    A row's code is -1 when its id is absent or no entry has it. Rows' companies and
    subscriptions are coded only where needed.
    """
    for column in ("company_id", "subscription_id"):
        _, codes, names = _keys(entries.frame[column].iloc[entries.source])
        entries.codes[column], entries.names[column] = codes, names
    rows.codes["transaction_id"] = _row_codes(entries, rows, "transaction_id", None)


def _row_codes(entries: _Side, rows: _Side, column: str, positions: IntArray | None) -> IntArray:
    """Return the entries' codes of the rows' values at ``positions`` (all when ``None``)."""
    source = rows.source if positions is None else rows.source[positions]
    values = _values(rows.frame[column].iloc[source])
    index = entries.lookup.get(column)
    if index is None:
        index = entries.lookup[column] = pd.Index(entries.names[column], dtype=object)
    codes = np.asarray(index.get_indexer(pd.Index(values, dtype=object, copy=False)), dtype="int64")
    empty = np.flatnonzero(entries.names[column] == "")
    if empty.size:  # the entries' empty text is absent, not a value to share
        codes[codes == empty[0]] = -1
    return codes


def _keys(
    column: pd.Series,
) -> tuple[npt.NDArray[np.object_], IntArray, npt.NDArray[np.object_]]:
    """Return a text column's values, codes and the text of each code.

    Equal text, equal code; absent or empty text -1.
    """
    values = _values(column)
    codes, uniques = pd.factorize(values)
    codes = codes.astype("int64")
    names = np.asarray(uniques, dtype=object)
    empty = np.flatnonzero(names == "")
    if empty.size:
        codes[codes == empty[0]] = -1
    return values, codes, names


def _values(column: pd.Series) -> npt.NDArray[np.object_]:
    """Return a text column's values as objects; anything but text is normalised first."""
    values = column.to_numpy(dtype=object)
    if isinstance(column.dtype, pd.StringDtype):
        return values
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return values
    return _text(column).to_numpy(dtype=object)


def _absent(values: npt.NDArray[np.object_]) -> BoolArray:
    """Return where text values are absent: missing or empty."""
    return np.asarray(pd.isna(values) | (values == ""), dtype=bool)


def _kind_codes(column: pd.Series) -> IntArray:
    """Return ``entry_type`` as indexes into ``_KINDS``: credits and debits, -1 for the rest.

    Only credits and debits drift or match, so other types need no code of their own.
    """
    values = _values(column)
    codes = np.full(len(values), -1, dtype="int64")
    for kind in DRIFTING_TYPES:
        codes[values == kind] = _KINDS.index(kind)
    return codes


def _content_order(times: IntArray, ids: npt.NDArray[np.object_], codes: IntArray) -> IntArray:
    """Return the positions sorted by time, then id (absent ids last), ties kept in place.

    Input read from the snapshot is in this order already; only then is the check all it costs.
    """
    order = np.argsort(times, kind="stable")
    same = times[order][1:] == times[order][:-1]
    if not same.any():
        return order
    absent = codes[order] < 0
    first, second = absent[:-1] & same, absent[1:] & same
    both = same & ~absent[:-1] & ~absent[1:]
    ordered_pairs = np.ones(len(same), dtype=bool)
    ordered_pairs[both] = ids[order][:-1][both] <= ids[order][1:][both]
    if ordered_pairs.all() and not (first & ~second).any():
        return order
    tied = np.zeros(len(times), dtype=bool)
    tied[order[1:][same]] = True
    tied[order[:-1][same]] = True
    ranks = np.zeros(len(times), dtype="int64")
    positions = np.flatnonzero(tied & (codes >= 0))
    ranks[positions[np.argsort(ids[positions], kind="stable")]] = np.arange(len(positions)) + 1
    ranks[tied & (codes < 0)] = len(positions) + 1
    return np.lexsort((ranks, times))


def _first_of_each(codes: IntArray) -> IntArray:
    """Return the positions of each code's first occurrence (absent counts as one code), sorted."""
    return np.flatnonzero(~pd.Series(codes).duplicated().to_numpy())


def _mask(size: int, positions: pd.Series) -> BoolArray:
    """Return a boolean array of ``size`` that is true at ``positions``."""
    mask = np.zeros(size, dtype=bool)
    mask[positions.to_numpy(dtype="int64")] = True
    return mask


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


# --- rules 1 to 3: pairing ------------------------------------------------------------------


def _exact_pairs(entries: _Side, rows: _Side) -> tuple[pd.DataFrame, pd.DataFrame]:
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
        ids = _values(rows.frame["transaction_id"].iloc[rows.source])
        partner[(row_codes < 0) & ~_absent(ids)] = -1
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


def _elsewhere(entries: _Side, rows: _Side, entry_ids: IntArray, row_ids: IntArray) -> BoolArray:
    """Return where a row sits on another company or subscription than its mapped entry."""
    company = entries.codes["company_id"][entry_ids]
    subscription = entries.codes["subscription_id"][entry_ids]
    mapped = (company >= 0) & (subscription >= 0)
    elsewhere: BoolArray = mapped & (
        (_row_codes(entries, rows, "company_id", row_ids) != company)
        | (_row_codes(entries, rows, "subscription_id", row_ids) != subscription)
    )
    return elsewhere


def _amount_pairs(
    entries: _Side,
    rows: _Side,
    free_entries: BoolArray,
    free_rows: BoolArray,
    match_window: timedelta,
) -> pd.DataFrame:
    """Pair mapped entries with rows that carry no Stripe id: one to one, nearest first."""
    anonymous = _anonymous(rows, np.flatnonzero(free_rows))
    candidates = _candidates(entries, rows, np.flatnonzero(free_entries), anonymous, match_window)
    chosen = _one_to_one(candidates["_e"].to_numpy(), candidates["_l"].to_numpy())
    return candidates.loc[chosen].reset_index(drop=True)


def _anonymous(rows: _Side, positions: IntArray) -> IntArray:
    """Return those of ``positions`` whose transaction id names no Stripe movement."""
    ids = rows.text("transaction_id", positions)
    stripe_like = pd.Series(ids, dtype=object).str.startswith(STRIPE_ID_PREFIXES, na=False)
    return positions[~stripe_like.to_numpy(dtype=bool)]


def _candidates(
    entries: _Side,
    rows: _Side,
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
    row_company = _row_codes(entries, rows, "company_id", row_ids)
    row_subscription = _row_codes(entries, rows, "subscription_id", row_ids)
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
    near = gaps <= match_window // _MICROSECOND
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


def _duplicates(
    entries: _Side,
    rows: _Side,
    exact: pd.DataFrame,
    matched: pd.DataFrame,
    paired_rows: BoolArray,
    match_window: timedelta,
) -> pd.DataFrame:
    """Return (entry, row) for leftover rows that repeat a matched movement (rule 3).

    A leftover row repeats a movement when it carries the movement's transaction id, or when it
    carries no Stripe id and would have matched the movement by amount (the nearest one wins).
    """
    by_id = exact.loc[~exact["_primary"], _PAIR]
    leftover = np.flatnonzero(~paired_rows & ~_mask(len(rows.time), matched["_l"]))
    movements = np.flatnonzero(_mask(len(entries.time), matched["_e"]))
    nearest = _candidates(entries, rows, movements, _anonymous(rows, leftover), match_window)
    by_amount = nearest.drop_duplicates("_l", keep="first")[_PAIR]
    duplicates = pd.concat([by_id, by_amount], ignore_index=True)
    counts = duplicates.groupby("_e")["_l"].transform("size")
    return duplicates.assign(_rows=counts.astype("int64") + 1)


# --- the findings ---------------------------------------------------------------------------


def _misapplied(entries: _Side, rows: _Side, misplaced: pd.DataFrame) -> pd.DataFrame:
    """Rule 1: a row names the movement on another account; reported if either is in the window.

    Its ``delta`` takes the row's amount back from where it sits; the movement's own
    ``missing_in_moesif`` finding (flagged, not posted) carries it where it belongs.
    """
    entry, row = _sides(entries, rows, misplaced)
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
    found = _findings(Category.MISAPPLIED, Action.FLAGGED, entry, row, details)
    # Reported where the row sits, whose balance it wrongly raises (the detail names both).
    for column in ("company_id", "subscription_id"):
        found[column] = row[column].to_numpy(dtype=object)
    return found


def _amount_mismatches(entries: _Side, rows: _Side, exact: pd.DataFrame) -> pd.DataFrame:
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


def _matched_by_amount(entries: _Side, rows: _Side, pairs: pd.DataFrame) -> pd.DataFrame:
    """Rule 2: informational findings for entries matched without a Stripe id."""
    entry, row = _sides(entries, rows, pairs)
    keep = entry["_in_window"].to_numpy()
    gaps = pairs["_gap"].to_numpy()[keep]
    entry, row = entry[keep].reset_index(drop=True), row[keep].reset_index(drop=True)
    details = [
        f"ledger row has no Stripe id; matched by amount, {_apart(gap)} apart" for gap in gaps
    ]
    return _findings(Category.MATCHED_BY_AMOUNT, Action.NONE, entry, row, details)


def _apart(gap: int) -> str:
    """Format a time gap in microseconds as ``45s``, ``12m`` or ``3h05m``."""
    seconds = int(gap) // 1_000_000
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _duplicate_findings(entries: _Side, rows: _Side, duplicates: pd.DataFrame) -> pd.DataFrame:
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


def _missing_in_stripe(rows: _Side, unexplained: IntArray) -> pd.DataFrame:
    """Rule 3: a credit or debit inside the window that no Stripe movement explains."""
    row = rows.take(unexplained)
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


def _carried(rows: _Side, misplaced: pd.DataFrame, size: int) -> npt.NDArray[np.object_]:
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


def _unmatched(
    entries: pd.DataFrame,
    currencies: Mapping[str, str | None],
    companies: Mapping[str, str | None],
) -> pd.DataFrame:
    """Rule 4: entries without a ledger row go to the posting rule: posted, or why not."""
    entry = entries[entries["_in_window"]].reset_index(drop=True)
    verdicts = [
        destination(
            Movement(
                currency=currency,
                company_id=company,
                subscription_id=subscription,
                transaction_id=transaction_id,
                unmapped_reason=reason,
            ),
            _subscription_of(subscription, currencies, companies),
            carried_by=() if carried is None else (carried,),
        )
        for transaction_id, currency, company, subscription, reason, carried in zip(
            entry["transaction_id"],
            entry["currency"],
            entry["company_id"],
            entry["subscription_id"],
            entry["unmapped_reason"],
            entry["_carried"],
            strict=True,
        )
    ]
    parts = [_missing_in_moesif(entry, verdicts)]
    for category in (Category.UNMAPPED_CUSTOMER, Category.CURRENCY_MISMATCH):
        mask = np.array([verdict.category == category for verdict in verdicts], dtype=bool)
        reasons = [verdict.reason for verdict in verdicts if verdict.category == category]
        parts.append(_findings(category, Action.FLAGGED, entry[mask], None, reasons))
    return pd.concat(parts, ignore_index=True)


def _subscription_of(
    subscription_id: str | None,
    currencies: Mapping[str, str | None],
    companies: Mapping[str, str | None],
) -> Subscription | None:
    """Return what the run knows of a subscription, as the posting rule takes it."""
    if subscription_id is None:
        return UNCHECKED
    if subscription_id in currencies and currencies[subscription_id] is None:
        return None
    return Subscription(
        currency=_lower(currencies.get(subscription_id)),
        company_id=companies.get(subscription_id),
    )


def _missing_in_moesif(entry: pd.DataFrame, verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """Rule 4: a mapped entry with no ledger row, which the run should post.

    Not while a misapplied row names it: moving that row settles both, and posting as well
    would credit the movement twice.
    """
    wanted = [verdict.posts or verdict.category == Category.MISAPPLIED for verdict in verdicts]
    held = [verdict.category == Category.MISAPPLIED for verdict in verdicts]
    held = [kept for kept, chosen in zip(held, wanted, strict=True) if chosen]
    chosen = entry[np.array(wanted, dtype=bool)]
    details = [
        f"no ledger row; {entry_type} of {format_major(minor, currency)} {currency.upper()}"
        + (
            "; not posted: a ledger row carrying this transaction id sits on another company "
            "or subscription (see its misapplied finding)"
            if kept
            else ""
        )
        for entry_type, minor, currency, kept in zip(
            chosen["entry_type"], chosen["amount_minor"], chosen["currency"], held, strict=True
        )
    ]
    found = _findings(Category.MISSING_IN_MOESIF, Action.WOULD_POST, chosen, None, details)
    found.loc[np.array(held, dtype=bool), "action"] = Action.FLAGGED.value
    return found


def _matched_currency_mismatches(
    entries: _Side,
    rows: _Side,
    matched: pd.DataFrame,
    currencies: Mapping[str, str | None],
) -> pd.DataFrame:
    """Rule 4: a matched entry whose currency differs from its subscription's known currency."""
    pairs = matched[entries.inside[matched["_e"].to_numpy()]]
    positions = pairs["_e"].to_numpy()
    subscriptions = entries.names["subscription_id"]
    theirs = np.array(
        [_lower(currencies.get(name)) for name in subscriptions.tolist()] + [None], dtype=object
    )[entries.codes["subscription_id"][positions]]
    ours = _values(entries.frame["currency"].iloc[entries.source[positions]])
    differs = pd.notna(theirs) & (theirs != ours)  # then ignore case where they differ
    differs[differs] = [
        _lower(mine) != known for mine, known in zip(ours[differs], theirs[differs], strict=True)
    ]
    entry, row = _sides(entries, rows, pairs[differs])
    _, known = _subscription_currency(entry, currencies)
    keep = _differs(entry, known)
    return _currency_findings(entry[keep], row[keep], known[keep], posted=True)


def _lower(text: object) -> str | None:
    """Return text lowercased, ``None`` when absent."""
    return None if text is None or text != text else str(text).lower()  # NaN != NaN


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


def _sides(entries: _Side, rows: _Side, pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the entries and rows of (entry, row) pairs, aligned position by position."""
    return entries.take(pairs["_e"].to_numpy()), rows.take(pairs["_l"].to_numpy())


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
