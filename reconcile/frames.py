"""The frames crossing the matcher's boundary: the findings schema, and column-wide edits to it."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.domain.ids import STRIPE_ID_PREFIXES
from reconcile.domain.times import Window
from reconcile.domain.values import FINDING_SCHEMA
from reconcile.domain.vocab import Action, Category
from reconcile.redaction import Redactor
from reconcile.rules.absence import DroppedRow, dropped_row_detail
from reconcile.rules.orders import Decision, Missing
from reconcile.totals import category_totals


def typed_findings(findings: pd.DataFrame) -> pd.DataFrame:
    """Return the findings in :data:`reconcile.domain.FINDING_SCHEMA`, or raise if they cannot be.

    Raises:
        ValueError: a column is missing.
    """
    absent = [column for column in FINDING_SCHEMA if column not in findings.columns]
    if absent:
        raise ValueError(f"the findings lack columns: {', '.join(absent)}")
    typed = findings[list(FINDING_SCHEMA)].astype(FINDING_SCHEMA)
    for column, dtype in FINDING_SCHEMA.items():
        if dtype == "object":
            typed[column] = typed[column].where(typed[column].notna(), None)
    return typed


def from_records(
    records: Sequence[Mapping[str, object]], extra: Sequence[str] = ()
) -> pd.DataFrame:
    """Return finding records as a frame of :data:`FINDING_SCHEMA`, plus ``extra`` text columns.

    Built column by column with its type, so an amount column with a missing cell stays whole
    minor units (nullable ``Int64``), never a float.
    """
    columns: dict[str, pd.Series] = {}
    for column, dtype in FINDING_SCHEMA.items():
        values = [record.get(column) for record in records]
        columns[column] = pd.Series(values, dtype=dtype)
    for column in extra:
        columns[column] = pd.Series([record.get(column) for record in records], dtype=object)
    return pd.DataFrame(columns)


def with_ids(ledger: pd.DataFrame, at: pd.Index, ids: Sequence[str | None]) -> pd.DataFrame:
    """Return the ledger with the ``transaction_id`` of the rows at ``at`` replaced by ``ids``.

    The column keeps its type: read from the snapshot, Arrow strings, so no Python object is
    made per id (a missing id stays missing).
    """
    if not len(at):
        return ledger
    column = ledger["transaction_id"].copy()
    column.loc[at] = pd.Series(list(ids), index=at, dtype=column.dtype)
    return ledger.assign(transaction_id=column)


def ledger_cells(ledger: pd.DataFrame, *columns: str) -> list[tuple[Any, ...]]:
    """Return the given ledger columns row by row, missing cells as ``None``."""
    frame = ledger[list(columns)].astype(object)
    return list(frame.where(frame.notna(), None).itertuples(index=False, name=None))


def begins_with(texts: pd.Series, head: str) -> pd.Series:
    """Return, row by row, whether a text begins with ``head`` (a missing one does not)."""
    values = pa.array(texts, type=pa.string(), from_pandas=True)
    found = pc.starts_with(values, head).fill_null(False)
    return pd.Series(found.to_numpy(zero_copy_only=False), index=texts.index, dtype=bool)


def named_by_stripe(ledger: pd.DataFrame) -> pd.Series:
    """Return, row by row, whether the ledger row's ``transaction_id`` is a Stripe id."""
    ids = pa.array(ledger["transaction_id"], from_pandas=True)
    if not pa.types.is_string(ids.type) and not pa.types.is_large_string(ids.type):
        ids = ids.cast(pa.string())
    named = pc.match_substring_regex(ids, _STRIPE_ID_PATTERN).fill_null(False)
    return pd.Series(named.to_numpy(zero_copy_only=False), index=ledger.index, dtype=bool)


_STRIPE_ID_PATTERN = "^(" + "|".join(re.escape(prefix) for prefix in STRIPE_ID_PREFIXES) + ")"


def strays(ledger: pd.DataFrame, expected: pd.DataFrame) -> set[str]:
    """Return the Stripe ids the ledger rows name that no expected entry has."""
    named = pa.array(ledger["transaction_id"][named_by_stripe(ledger)], type=pa.string())
    known = pa.array(expected["transaction_id"], type=pa.string())
    return set(pc.unique(named.filter(pc.invert(pc.is_in(named, value_set=known)))).to_pylist())


def missing(findings: pd.DataFrame) -> tuple[pd.Index, list[Missing]]:
    """Return the index and plain values of the ``missing_in_moesif`` findings."""
    rows = findings[findings["category"] == Category.MISSING_IN_MOESIF]
    return rows.index, [
        Missing(
            transaction_id=str(row.transaction_id),
            action=_ACTIONS.get(str(row.action)) or Action(str(row.action)),
            company_id=str(row.company_id),
            subscription_id=str(row.subscription_id),
            entry_type=str(row.entry_type),
            amount_minor=int(str(row.stripe_amount_minor)),
            currency=str(row.currency),
            stripe_object_id=str(row.stripe_object_id),
            occurred_at=_moment(row.stripe_created_at),
        )
        for row in rows.itertuples(index=False)
    ]


_ACTIONS = {str(action): action for action in Action}
"""Each action by its text: looked up by dictionary, not by the enumeration's own search."""


def missing_ids(findings: pd.DataFrame) -> list[str]:
    """Return the transaction ids of the ``missing_in_moesif`` findings (as :func:`missing`)."""
    rows = findings[findings["category"] == Category.MISSING_IN_MOESIF]
    return [str(transaction_id) for transaction_id in rows["transaction_id"].tolist()]


def _moment(value: object) -> datetime | None:
    """A frame's time as an aware datetime; ``None`` for a missing one."""
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else None


def decided(findings: pd.DataFrame, index: pd.Index, decisions: Sequence[Decision]) -> pd.DataFrame:
    """Return the findings with the rows at ``index`` given the decisions' actions and details.

    A decision without a detail keeps the detail the finding had.
    """
    findings = findings.copy()
    if not len(index):
        return findings
    findings.loc[index, "action"] = [str(decision.action) for decision in decisions]
    details = pd.Series([decision.detail for decision in decisions], index=index, dtype=object)
    findings.loc[index, "detail"] = details.where(details.notna(), findings.loc[index, "detail"])
    return findings


def naming_dropped(findings: pd.DataFrame, dropped: Mapping[str, DroppedRow]) -> pd.DataFrame:
    """Return the findings with each missing movement's detail naming its gone Moesif row."""
    if not dropped:
        return findings
    index, missing_ones = missing(findings)
    hits = [
        (label, dropped[finding.transaction_id])
        for label, finding in zip(index, missing_ones, strict=True)
        if finding.transaction_id in dropped
    ]
    if not hits:
        return findings
    findings = findings.copy()
    for label, row in hits:
        before: object = findings.at[label, "detail"]
        text = None if before is None or before != before else str(before)  # NaN != NaN
        findings.at[label, "detail"] = dropped_row_detail(text, row)
    return findings


def with_detail(findings: pd.DataFrame, index: pd.Index, detail: str) -> pd.DataFrame:
    """Return the findings with the rows at ``index`` given one detail."""
    findings = findings.copy()
    findings.loc[index, "detail"] = detail
    return findings


def actions(findings: pd.DataFrame) -> list[str]:
    """Return each finding's action."""
    return [str(action) for action in findings["action"]]


def counts(findings: pd.DataFrame) -> dict[str, int]:
    """Return how many findings each category has."""
    return dict(Counter(findings["category"].astype(str)))


def totals(findings: pd.DataFrame) -> dict[str, str]:
    """Return amounts per ``category:currency:entry_type``, in major units.

    Stripe's amount where the finding has one, else Moesif's (so ``missing_in_stripe`` counts).
    """
    return {
        f"{category}:{currency}:{entry_type}": text
        for (category, currency, entry_type), text in category_totals(
            findings, stripe_only=False
        ).items()
    }


def each_once(convert: Callable[[Any], _Out], values: Iterable[Any]) -> list[_Out]:
    """Return ``convert`` of each value, each distinct value (and type) converted once.

    Findings repeat their categories, companies, currencies, amounts and times.
    """
    done: dict[tuple[type, Any], _Out] = {}
    converted = []
    for value in values:
        key = (type(value), value)
        try:
            cell = done[key]
        except KeyError:
            cell = done[key] = convert(value)
        except TypeError:  # not hashable: converted each time
            cell = convert(value)
        converted.append(cell)
    return converted


_Out = TypeVar("_Out")


def objects(column: pd.Series) -> list[Any]:
    """Return a column's values as Python objects, ``None`` where missing."""
    values = column.to_numpy(dtype=object, copy=True)
    values[pd.isna(values)] = None
    return list(values.tolist())


def in_window(expected: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Return the expected entries created inside the window."""
    created = expected["created_at"]
    inside: pd.DataFrame = expected[(created >= window.since) & (created < window.until)]
    return inside


def subscriptions_paid(expected: pd.DataFrame) -> list[tuple[str, str]]:
    """Return each subscription the entries pay into, with the currency of its first entry."""
    paying = expected.dropna(subset=["subscription_id", "currency"])
    firsts = paying.drop_duplicates("subscription_id").sort_values("subscription_id")
    return list(
        zip(
            firsts["subscription_id"].astype(str).tolist(),
            firsts["currency"].astype(str).tolist(),
            strict=True,
        )
    )


def of_companies(ledger: pd.DataFrame, companies: Sequence[str]) -> pd.DataFrame:
    """Return the ledger rows of these companies; all of them when none are named."""
    return ledger[ledger["company_id"].isin(companies)] if companies else ledger


def joined(first: pd.DataFrame, more: pd.DataFrame) -> pd.DataFrame:
    """Return ``first`` with the rows of ``more`` after it."""
    return first if more.empty else pd.concat([first, more], ignore_index=True)


def unknown_companies(
    companies: Sequence[str], expected: pd.DataFrame, ledger: pd.DataFrame
) -> list[str]:
    """Return the companies asked for that no expected entry or ledger row names."""
    if not companies:
        return []
    named = set(expected["company_id"].dropna().unique()) | set(
        ledger["company_id"].dropna().unique()
    )
    return [company for company in companies if company not in named]


def joined_ids(ids: pd.Series, more: Collection[str]) -> pd.Series:
    """Return ``ids`` followed by ``more``, as one text column (no Python object per id)."""
    if not more:
        return ids.reset_index(drop=True)
    return pd.concat([ids, pd.Series(list(more), dtype=ids.dtype)], ignore_index=True)


def ids_of(frame: pd.DataFrame, column: str) -> frozenset[str]:
    """Return the distinct values of one id column."""
    return frozenset(frame[column].dropna().unique().tolist())


@dataclass(frozen=True)
class Present:
    """The ids a run could read, kept as its frames' columns: no Python set of every id.

    ``also`` holds a few more ids from elsewhere (a check that compared them).
    """

    columns: tuple[pd.Series, ...]
    also: frozenset[str] = frozenset()

    def among(self, ids: Collection[str]) -> frozenset[str]:
        """Return those of ``ids`` that are present, by one hash lookup per column."""
        asked = sorted(set(ids))
        found = set(self.also.intersection(asked))
        if asked:
            for column in self.columns:
                found.update(column[column.isin(asked)].dropna().tolist())
        return frozenset(found)

    def __or__(self, more: Collection[str]) -> Present:
        return replace(self, also=self.also | frozenset(more))


def redacted(findings: pd.DataFrame, redactor: Redactor) -> pd.DataFrame:
    """Return the findings with every text cell masked by the redactor (:meth:`Redactor.texts`)."""
    findings = findings.copy()
    for column in ("detail", "company_id", "subscription_id", "transaction_id", "moesif_id"):
        if column in findings.columns:
            findings[column] = redactor.texts(findings[column].tolist())
    return findings
