"""The ``match`` benchmark: snapshot database to findings to CSV, against datacompy's comparison.

Ours, timed in phases: read both frames from the snapshot (``expected_frame``, ``ledger_frame``
with the expected ids, the subscription currencies in one query), ``matching.match``, and the
CSV report. The yardstick, in its own process: the same two frames read the same way, then
``datacompy.PandasCompare`` of them joined on ``transaction_id`` (the comparison only; the read
is not counted, so the ratio is conservative for us).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.data import MATCH_WINDOW, WINDOW
from reconcile import matching, report
from reconcile.db.engine import make_engine
from reconcile.db.expected import expected_frame
from reconcile.db.ledger import ledger_frame
from reconcile.db.models import MoesifSubscription
from reconcile.times import Window

YARDSTICK = "datacompy"


def load(
    url: str, window: Window = WINDOW
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str | None]]:
    """Read the widened window's expected entries, ledger rows and currencies, as a run does."""
    wide = window.widened(MATCH_WINDOW)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            expected = expected_frame(session, wide.since, wide.until)
            ledger = ledger_frame(
                session, wide.since, wide.until, expected["transaction_id"].tolist()
            )
            query = select(MoesifSubscription.subscription_id, MoesifSubscription.currency)
            currencies = {sub: currency for sub, currency in session.execute(query)}
    finally:
        engine.dispose()
    return expected, ledger, currencies


def ours(url: str, report_dir: Path, window: Window = WINDOW) -> dict[str, Any]:
    """Run the path once over ``window`` and return its phase times and counts."""
    began = time.perf_counter()
    expected, ledger, currencies = load(url, window)
    loaded = time.perf_counter()
    findings = matching.match(
        expected,
        ledger,
        window=window,
        match_window=MATCH_WINDOW,
        subscription_currency=currencies,
    )
    matched = time.perf_counter()
    path = report.write_report(findings, "bench", report_dir)
    written = time.perf_counter()
    return {
        "seconds": written - began,
        "load_seconds": loaded - began,
        "match_seconds": matched - loaded,
        "report_seconds": written - matched,
        "expected_rows": len(expected),
        "ledger_rows": len(ledger),
        "findings": len(findings),
        "report_bytes": path.stat().st_size,
    }


def yardstick(url: str) -> dict[str, Any]:
    """Time datacompy's plain comparison of the same two frames; note it when not installed."""
    try:
        import datacompy  # optional: it pins an older pandas than ours
    except ImportError:
        return {"seconds": None, "note": "datacompy is not installed"}
    expected, ledger, _ = load(url)
    began = time.perf_counter()
    comparison = datacompy.PandasCompare(expected, ledger, join_columns=["transaction_id"])
    matches = comparison.matches()
    return {"seconds": time.perf_counter() - began, "matches": bool(matches)}
