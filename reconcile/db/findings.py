"""The findings table: writing a run's findings, reading them back."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from reconcile.db.frames import among, fewer
from reconcile.db.models import Finding, Run
from reconcile.db.sql import insert_columns
from reconcile.domain.values import FINDING_COLUMNS
from reconcile.domain.vocab import Category
from reconcile.frames import objects


def store_findings(session: Session, run_id: str, findings: pd.DataFrame) -> int:
    """Insert every finding of a run; return how many."""
    if findings.empty:
        return 0
    columns = FINDING_COLUMNS + (["finding_id"] if "finding_id" in findings.columns else [])
    cells: dict[str, Sequence[Any] | pd.Series] = {"run_id": [run_id] * len(findings)}
    for name in columns:
        values = findings[name]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            cells[name] = values  # bound as a whole column
            continue
        cells[name] = [  # text (most cells) is plain already
            value if value is None or type(value) is str else _plain(value)
            for value in objects(values)
        ]
    table = Finding.__table__
    assert isinstance(table, Table)
    insert_columns(session, table, cells)
    return len(findings)


def _plain(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def remembered_pairs(session: Session, moesif_ids: Collection[str]) -> dict[str, str]:
    """Return, for ledger rows an earlier real run matched by amount, the movement it chose.

    A row once matched by amount keeps its movement, so that a later run cannot hand it to a
    newer payment of the same amount and leave the older one unreported outside its window.
    """
    if not moesif_ids:
        return {}
    query = (
        select(Finding.moesif_id, Finding.transaction_id)
        .join(Run, Run.id == Finding.run_id)
        .where(Finding.category == Category.MATCHED_BY_AMOUNT, Run.dry_run.is_(False))
        .order_by(Run.started_at, Finding.id)
    )
    # one query, however many rows ask; the latest run's choice is the one kept. When fewer
    # such findings exist than rows ask, they are read and kept by id, no ids written.
    if fewer(session, query, len(moesif_ids)):
        asked = set(moesif_ids)
        found = [(row, tid) for row, tid in session.execute(query) if row in asked]
    else:
        found = list(session.execute(query.where(among(session, Finding.moesif_id, moesif_ids))))
    return {str(row): str(tid) for row, tid in found if row and tid}


def findings_of_run(session: Session, run_id: str, actions: Collection[str]) -> list[Finding]:
    """Return the findings of a run whose action is one of ``actions``."""
    query = select(Finding).where(Finding.run_id == run_id, Finding.action.in_(list(actions)))
    return list(session.scalars(query))


def counts_by_category(
    session: Session, run_id: str, actions: Collection[str]
) -> list[tuple[str, str, int]]:
    """Return (category, action, count) of a run's findings with one of ``actions``, sorted."""
    query = (
        select(Finding.category, Finding.action, func.count())
        .where(Finding.run_id == run_id, Finding.action.in_(list(actions)))
        .group_by(Finding.category, Finding.action)
        .order_by(Finding.category, Finding.action)
    )
    return [
        (str(category), str(action), int(count))
        for category, action, count in session.execute(query)
    ]


def first_findings(
    session: Session, run_id: str, category: str, action: str, limit: int
) -> Sequence[Finding]:
    """Return the first ``limit`` findings of a run with this category and action."""
    return session.scalars(
        select(Finding)
        .where(Finding.run_id == run_id, Finding.category == category, Finding.action == action)
        .order_by(Finding.id)
        .limit(limit)
    ).all()
