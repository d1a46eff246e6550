"""The CSV drift report and the terminal summary of one run's findings."""

from __future__ import annotations

import csv
import logging
import numbers
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.domain.money import format_major
from reconcile.domain.times import Window, to_iso
from reconcile.domain.values import REPORT_COLUMNS
from reconcile.domain.vocab import Action, Category
from reconcile.files import write_atomically
from reconcile.frames import each_once
from reconcile.rules.delta import correction
from reconcile.totals import FALLBACK_CURRENCY, Key, category_sums

logger = logging.getLogger(__name__)

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these would be run as a formula by a spreadsheet."""

AMOUNT_COLUMNS = ("stripe_amount", "moesif_amount", "delta")
"""Report columns holding our own decimal strings, which stay numbers (``-5.00``)."""

ACCOUNT_COLUMN = "stripe_account"
"""The column a connected account's report appends after ``REPORT_COLUMNS`` (section 12)."""

_TIME_SUFFIXES = ("_created_at", "_seen_at")

_Cell = TypeVar("_Cell")

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def to_report_frame(findings: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """Return the findings as report rows: ``REPORT_COLUMNS``, every cell a string, built by column.

    Amounts are major-unit decimal strings by the currency's exponent, ``delta`` is the
    correction the balance needs (:func:`reconcile.rules.delta.correction`), times are ISO
    8601 UTC with ``Z``, absent values are empty, and text that a spreadsheet would run as a
    formula gets a leading apostrophe.
    """
    size = len(findings)

    def column(name: str) -> list[object]:
        """The column's plain values, or absent cells when the findings lack it."""
        return findings[name].tolist() if name in findings.columns else [None] * size

    def text_column(name: str, convert: Callable[[Any], str]) -> list[str]:
        """The column's cells, each distinct text converted once (every cell when absent)."""
        if name not in findings.columns:
            return [convert(None)] * size
        return _each_distinct(convert, findings[name])

    currencies = text_column("currency", lambda value: _text(value) or FALLBACK_CURRENCY)
    stripe_minor = [_minor(value) for value in column("stripe_amount_minor")]
    moesif_minor = [_minor(value) for value in column("moesif_amount_minor")]
    categories, entry_types = column("category"), column("entry_type")
    deltas = each_once(
        lambda key: correction(_text(key[0]), _text(key[1]), key[2], key[3]),
        list(zip(categories, entry_types, stripe_minor, moesif_minor, strict=True)),
    )
    cells: dict[str, list[str]] = {}
    for name in REPORT_COLUMNS:
        if name in AMOUNT_COLUMNS or name == "run_id":
            continue
        values = findings[name] if name in findings.columns else None
        if values is not None and isinstance(values.dtype, pd.DatetimeTZDtype):
            cells[name] = _times(values)
            continue
        if name.endswith(_TIME_SUFFIXES):
            cells[name] = text_column(name, _time_cell)
        else:
            cells[name] = [""] * size if values is None else _text_cells(values)
    cells["run_id"] = [neutralise(run_id)] * size
    for name, minors in (("stripe_amount", stripe_minor), ("moesif_amount", moesif_minor)):
        cells[name] = each_once(
            lambda key: _amount(key[0], key[1]), list(zip(minors, currencies, strict=True))
        )
    cells["delta"] = each_once(
        lambda key: _amount(key[0], key[1]), list(zip(deltas, currencies, strict=True))
    )
    return pd.DataFrame({name: cells[name] for name in REPORT_COLUMNS}, dtype=object)


def _text_cell(value: object) -> str:
    return neutralise(_text(value))


def _time_cell(value: object) -> str:
    return neutralise(_time(value))


def _each_distinct(convert: Callable[[Any], _Cell], values: pd.Series) -> list[_Cell]:
    """Return ``convert`` of each value of a column, each distinct text converted once.

    A column of text (absent cells aside) is coded by pandas, without a dictionary lookup per
    cell; absent cells are converted as ``None``. Any other column is
    :func:`reconcile.frames.each_once`'s.
    """
    if not _is_text(values):
        return each_once(convert, values.tolist())
    codes, uniques = pd.factorize(values)
    converted = [convert(value) for value in uniques.tolist()] + [convert(None)]
    return list(np.asarray(converted, dtype=object)[codes].tolist())  # code -1 reads the last


def _text_cells(values: pd.Series) -> list[str]:
    """Return :func:`_text_cell` of each value of a column, a column of text by Arrow at once."""
    if not _is_text(values):
        return each_once(_text_cell, values.tolist())
    texts = pa.array(values, type=pa.string(), from_pandas=True).fill_null("")
    formulas = pc.is_in(pc.utf8_slice_codeunits(texts, 0, 1), value_set=_TRIGGERS)
    if pc.any(formulas).as_py():
        texts = pc.if_else(formulas, pc.binary_join_element_wise("'", texts, ""), texts)
    return list(texts.to_pylist())


def _is_text(values: pd.Series) -> bool:
    """Whether a column holds only text, absent cells aside."""
    return isinstance(values.dtype, pd.StringDtype) or pd.api.types.infer_dtype(
        values, skipna=True
    ) in ("string", "empty")


_TRIGGERS = pa.array(FORMULA_TRIGGERS, type=pa.string())


def _times(values: pd.Series) -> list[str]:
    """Return a column of aware times as :func:`_time` gives each, formatted in one pass."""
    text = values.dt.tz_convert("UTC").dt.strftime(_ISO_SECONDS)
    return [neutralise(cell) if isinstance(cell, str) else "" for cell in text.tolist()]


_ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
""":func:`reconcile.domain.times.to_iso`'s format, applied to a whole column of UTC times."""


def records(frame: pd.DataFrame) -> list[dict[Hashable, object]]:
    """Return the frame's rows as dicts of plain values (as ``to_dict("records")``, faster).

    Each column is turned into Python values at once, not cell by cell.
    """
    names = list(frame.columns)
    columns = [frame[name].tolist() for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def write_report(
    findings: pd.DataFrame, run_id: str, report_dir: Path, *, stripe_account: str | None = None
) -> Path:
    """Write ``{report_dir}/drift-{run_id}.csv`` atomically and return its path.

    The file is UTF-8 with LF line endings and always has the header row. A connected
    account's run (``stripe_account``) appends the column ``stripe_account`` (section 12).

    Raises:
        ValueError: ``run_id`` is not safe to use in a file name.
        OSError: the directory or file could not be written.
    """
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id {run_id!r} is not safe in a file name")
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"drift-{run_id}.csv"
    frame = to_report_frame(findings, run_id)
    columns = list(REPORT_COLUMNS)
    if stripe_account is not None:
        frame[ACCOUNT_COLUMN] = neutralise(stripe_account)
        columns.append(ACCOUNT_COLUMN)
    _write_atomically(path, frame.itertuples(index=False, name=None), columns)
    logger.info("wrote drift report %s (%d findings)", path, len(frame))
    return path


def summary(
    findings: pd.DataFrame,
    *,
    posted: int,
    post_failed: int,
    report_path: Path | None,
    window: Window,
    dry_run: bool,
) -> str:
    """Return a short plain-text summary for the terminal: counts and totals per category.

    Totals are per currency in major units, of the Stripe amount where there is one, else the
    Moesif amount.
    """
    lines = [f"reconcile {to_iso(window.since)} .. {to_iso(window.until)}"]
    if dry_run:
        lines[0] += " (dry run)"
    sums = category_sums(findings, stripe_only=False)
    table = [("category", "count", "total")] + [
        _category_line(findings, category, sums) for category in Category
    ]
    widths = [max(len(line[column]) for line in table) for column in range(3)]
    for name, count, total in table:
        lines.append(f"{name:<{widths[0]}}  {count:>{widths[1]}}  {total}".rstrip())
    flagged = int(findings["action"].isin([Action.FLAGGED.value, Action.REOPENED.value]).sum())
    lines.append(f"flagged for review: {flagged}")
    lines.append(_postings_line(findings, posted, post_failed, dry_run))
    lines.append(f"report: {report_path}" if report_path else "report: not written")
    return "\n".join(lines)


# --- rows and cells -------------------------------------------------------------------------


def neutralise(cell: str) -> str:
    """Return ``cell`` with a leading apostrophe if a spreadsheet would run it as a formula."""
    return "'" + cell if cell.startswith(FORMULA_TRIGGERS) else cell


def _absent(value: object) -> bool:
    """Return whether a cell is missing (``None``, NaN, NA or NaT)."""
    if value is None:
        return True
    if isinstance(value, str) or type(value) is int:  # most cells: no need to ask pandas
        return False
    return bool(pd.isna(value))  # type: ignore[call-overload]


def _text(value: object) -> str:
    """Return a text cell, empty when absent."""
    return "" if _absent(value) else str(value)


def _minor(value: object) -> int | None:
    """Return a minor-unit amount as ``int``, or ``None`` when absent."""
    if _absent(value):
        return None
    if not isinstance(value, numbers.Integral):
        raise TypeError(f"expected whole minor units, not {type(value).__name__}")
    return int(value)


def _amount(minor: int | None, currency: str) -> str:
    """Return a major-unit decimal string, empty when absent."""
    return "" if minor is None else format_major(minor, currency)


def _time(value: object) -> str:
    """Return an ISO 8601 UTC time with ``Z``, empty when absent."""
    if _absent(value):
        return ""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a time, not {type(value).__name__}")
    return to_iso(value)


def _write_atomically(
    path: Path, rows: Iterable[tuple[object, ...]], columns: Sequence[str] = REPORT_COLUMNS
) -> None:
    """Write the header and rows to ``path`` atomically."""

    def write(stream: TextIO) -> None:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)

    write_atomically(path, write)


# --- the summary ----------------------------------------------------------------------------


def _category_line(
    findings: pd.DataFrame, category: Category, sums: Mapping[Key, int]
) -> tuple[str, str, str]:
    """Return (category, count, totals per currency and type) for one category.

    Totals read ``5000 JPY credit, 25.00 USD credit``; credits and debits are never added.
    """
    count = int((findings["category"] == category.value).sum())
    totals = ", ".join(
        f"{format_major(total, code)} {code.upper()} {kind}".rstrip()
        for (name, code, kind), total in sums.items()
        if name == category.value
    )
    return category.value, str(count), totals


def _postings_line(findings: pd.DataFrame, posted: int, post_failed: int, dry_run: bool) -> str:
    """Say what was posted, or what a dry run would have posted."""
    if dry_run:
        would = int((findings["action"] == Action.WOULD_POST.value).sum())
        return f"would post: {would} (dry run, nothing posted)"
    text = f"posted: {posted}"
    if post_failed:
        text += f", failed to post: {post_failed}"
    return text
