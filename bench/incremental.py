"""The ``incremental`` benchmark: a one-day window's path with a long history beside it.

The snapshot holds the same one-day window of entries (``WINDOW_ENTRIES``) and, weeks earlier,
a history of ``history`` more; the run's path (read, match, report) over that day should cost
the same whatever the history, as every read is bounded by the window's indexes.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from bench import data, snapshot
from reconcile.domain.times import Window

DAY = Window(data.START + timedelta(days=3), data.START + timedelta(days=4))
"""The one-day window the run reconciles."""
HISTORY_BEFORE = timedelta(days=60)
"""How far before the generated week the history is moved, out of every widened window."""


def fill(url: str, history: int, window_entries: int) -> None:
    """Fill ``url`` with a week of ``window_entries`` around the day and ``history`` older ones."""
    expected, ledger, currencies = data.generate(window_entries)
    old_expected, old_ledger, old_currencies = data.generate(history, seed=11)
    old_expected = old_expected.assign(
        created_at=old_expected["created_at"] - HISTORY_BEFORE,
        transaction_id="h" + old_expected["transaction_id"],
    )
    old_ledger = old_ledger.assign(
        created_at=old_ledger["created_at"] - HISTORY_BEFORE,
        moesif_id="h" + old_ledger["moesif_id"],
        transaction_id="h" + old_ledger["transaction_id"],
    )
    snapshot.fill(
        url,
        pd.concat([old_expected, expected], ignore_index=True),
        pd.concat([old_ledger, ledger], ignore_index=True),
        {**old_currencies, **currencies},
    )
