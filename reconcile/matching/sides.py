"""The matcher's two inputs, expected entries and ledger rows, as integer arrays in content order.

Each side is kept in content order (time, then id): times in microseconds, amounts, and small
integer codes for the text keys. Text is normalised (``None`` for absent or empty) only for the
few rows that become findings.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.domain.times import Window
from reconcile.domain.vocab import EntryType

IntArray = npt.NDArray[np.int64]

BoolArray = npt.NDArray[np.bool_]

DRIFTING_TYPES = (EntryType.CREDIT.value, EntryType.DEBIT.value)
"""Ledger types that mirror Stripe; promotions, adjustments and usage are Moesif's own."""

PAIR = ["_e", "_l"]

KINDS = [kind.value for kind in EntryType]

MICROSECOND = timedelta(microseconds=1)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Side(NamedTuple):
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
    """``entry_type`` as an index into ``KINDS``, -1 for any other or absent type."""
    inside: BoolArray
    codes: dict[str, IntArray]
    """Integer codes of text keys, filled by ``share_keys`` (-1 where absent)."""
    names: dict[str, npt.NDArray[np.object_]]
    """The text each code of ``codes`` stands for (the entries' own values)."""
    lookup: dict[str, pa.Array]
    """``names`` as Arrow text, built once when rows are looked up in it."""

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


def side_of(
    frame: pd.DataFrame,
    columns: list[str],
    name: str,
    key: str,
    window: Window,
    recheck: Collection[str] = (),
) -> Side:
    """Check a frame, order it by content (time, then ``key``) and drop repeated ``key``s.

    A position counts as inside the window when its time is, or its ``key`` is in ``recheck``.
    """
    absent = [column for column in columns if column not in frame.columns]
    if absent:
        raise ValueError(f"the {name} frame lacks columns: {', '.join(absent)}")
    times = _utc(frame["created_at"], name).array.asi8.astype("int64")
    amounts: IntArray = np.asarray(frame["amount_minor"].astype("int64"), dtype=np.int64)
    codes, names = _keys(frame[key])
    order = _content_order(times, names, codes)
    kept = order[_first_of_each(codes[order])]
    since = (window.since - _EPOCH) // MICROSECOND
    until = (window.until - _EPOCH) // MICROSECOND
    return Side(
        frame=frame,
        columns=columns,
        name=name,
        source=kept,
        time=times[kept],
        amount=amounts[kept],
        kind=_kind_codes(frame["entry_type"])[kept],
        inside=((times[kept] >= since) & (times[kept] < until))
        | _named(codes[kept], names, recheck),
        codes={key: codes[kept]},
        names={key: names},
        lookup={},
    )


def drifting(rows: Side) -> Side:
    """Keep only credits and debits: the ledger rows that mirror Stripe."""
    keep = np.flatnonzero(np.isin(rows.kind, [KINDS.index(kind) for kind in DRIFTING_TYPES]))
    return rows._replace(
        source=rows.source[keep],
        time=rows.time[keep],
        amount=rows.amount[keep],
        kind=rows.kind[keep],
        inside=rows.inside[keep],
    )


def share_keys(entries: Side, rows: Side) -> None:
    """Code the entries' text keys, and the rows' transaction ids by the entries' values.

    A row's code is -1 when its id is absent or no entry has it. Rows' companies and
    subscriptions are coded only where needed.
    """
    for column in ("company_id", "subscription_id"):
        codes, names = _keys(entries.frame[column].iloc[entries.source])
        entries.codes[column], entries.names[column] = codes, names
    rows.codes["transaction_id"] = row_codes(entries, rows, "transaction_id", None)


def row_codes(entries: Side, rows: Side, column: str, positions: IntArray | None) -> IntArray:
    """Return the entries' codes of the rows' values at ``positions`` (all when ``None``)."""
    source = rows.source if positions is None else rows.source[positions]
    values = _arrow_text(rows.frame[column].iloc[source])
    names = entries.lookup.get(column)
    if names is None:
        names = entries.lookup[column] = pa.array(entries.names[column], type=pa.string())
    found = pc.index_in(values, value_set=names)  # Arrow's hash lookup, no object per value
    codes = np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype="int64")
    empty = np.flatnonzero(entries.names[column] == "")
    if empty.size:  # the entries' empty text is absent, not a value to share
        codes[codes == empty[0]] = -1
    return codes


def _keys(column: pd.Series) -> tuple[IntArray, npt.NDArray[np.object_]]:
    """Return a text column's codes and the text of each code, codes by first appearance.

    Equal text, equal code; absent or empty text -1. Arrow-backed text is coded by Arrow,
    without a Python object per value (only one per distinct text).
    """
    codes, uniques = pd.factorize(column if _arrow_backed(column) else text_values(column))
    codes = np.asarray(codes, dtype="int64")
    names = np.asarray(uniques, dtype=object)
    empty = np.flatnonzero(names == "")
    if empty.size:
        codes[codes == empty[0]] = -1
    return codes, names


def _named(codes: IntArray, names: npt.NDArray[np.object_], ids: Collection[str]) -> BoolArray:
    """Return, per position, whether its text (coded by ``names``) is one of ``ids``."""
    if not ids:
        return np.zeros(len(codes), dtype=bool)
    wanted = np.append(pd.Index(names, dtype=object).isin(list(ids)), False)
    return np.asarray(wanted[codes], dtype=bool)  # code -1 reads the last cell: absent


def _arrow_backed(column: pd.Series) -> bool:
    """Whether a column holds its text in Arrow (as read from the snapshot)."""
    return isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow"


def _arrow_text(column: pd.Series) -> pa.Array | pa.ChunkedArray:
    """Return a text column as Arrow text (other values normalised first, absent as null)."""
    if _arrow_backed(column):
        return pa.array(column.array)
    return pa.array(text_values(column), type=pa.string(), from_pandas=True)


def text_values(column: pd.Series) -> npt.NDArray[np.object_]:
    """Return a text column's values as objects; anything but text is normalised first."""
    values = column.to_numpy(dtype=object)
    if isinstance(column.dtype, pd.StringDtype):
        return values
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return values
    return _text(column).to_numpy(dtype=object)


def absent_text(values: npt.NDArray[np.object_]) -> BoolArray:
    """Return where text values are absent: missing or empty."""
    return np.asarray(pd.isna(values) | (values == ""), dtype=bool)


def _kind_codes(column: pd.Series) -> IntArray:
    """Return ``entry_type`` as indexes into ``KINDS``: credits and debits, -1 for the rest.

    Only credits and debits drift or match, so other types need no code of their own.
    """
    values = column if _arrow_backed(column) else pd.Series(text_values(column), dtype=object)
    codes = np.full(len(values), -1, dtype="int64")
    for kind in DRIFTING_TYPES:
        codes[(values == kind).to_numpy(dtype=bool, na_value=False)] = KINDS.index(kind)
    return codes


def _content_order(times: IntArray, names: npt.NDArray[np.object_], codes: IntArray) -> IntArray:
    """Return the positions sorted by time, then id (absent ids last), ties kept in place.

    Ids are ``names`` by ``codes`` (absent: code -1). Input read from the snapshot is in this
    order already; only then is the check all it costs.
    """
    order = np.argsort(times, kind="stable")
    same = times[order][1:] == times[order][:-1]
    if not same.any():
        return order
    absent = codes[order] < 0
    first, second = absent[:-1] & same, absent[1:] & same
    both = same & ~absent[:-1] & ~absent[1:]
    ordered_pairs = np.ones(len(same), dtype=bool)
    ordered_pairs[both] = names[codes[order][:-1][both]] <= names[codes[order][1:][both]]
    if ordered_pairs.all() and not (first & ~second).any():
        return order
    tied = np.zeros(len(times), dtype=bool)
    tied[order[1:][same]] = True
    tied[order[:-1][same]] = True
    ranks = np.zeros(len(times), dtype="int64")
    positions = np.flatnonzero(tied & (codes >= 0))
    ranks[positions[np.argsort(names[codes[positions]], kind="stable")]] = (
        np.arange(len(positions)) + 1
    )
    ranks[tied & (codes < 0)] = len(positions) + 1
    return np.lexsort((ranks, times))


def _first_of_each(codes: IntArray) -> IntArray:
    """Return the positions of each code's first occurrence (absent counts as one code), sorted."""
    return np.flatnonzero(~pd.Series(codes).duplicated().to_numpy())


def mask(size: int, positions: pd.Series) -> BoolArray:
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
