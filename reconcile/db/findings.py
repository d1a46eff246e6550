"""Writing a run's findings to the findings table."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import insert
from sqlalchemy.orm import Session

from reconcile.db.models import Finding
from reconcile.domain import FINDING_COLUMNS


def store_findings(session: Session, run_id: str, findings: pd.DataFrame) -> int:
    """Insert every finding of a run; return how many."""
    if findings.empty:
        return 0
    frame = findings[FINDING_COLUMNS].astype(object).where(findings[FINDING_COLUMNS].notna(), None)
    records: list[dict[str, Any]] = [
        {"run_id": run_id, **{str(k): _plain(v) for k, v in record.items()}}
        for record in frame.to_dict(orient="records")
    ]
    for start in range(0, len(records), 1000):
        session.execute(insert(Finding), records[start : start + 1000])
    return len(records)


def _plain(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value
