"""Where a subscription's balance figures come from: its latest billing-report row, or Moesif now.

Every billing-report row carries the subscription's balance after it (``ending_balance``), and
the snapshot keeps the rows runs read. A subscription's latest row therefore gives its balance
as of that row's time, without a request, when nothing can have moved it since unseen:

* the row lies in the newest window a run read in full (a run that read Moesif for every
  company the check covers and concluded), so that run would have stored any later row up to
  its start; a row older than that window is an old figure, and is read again;
* no posting Moesif confirmed is missing from the rows (it moved the balance after the row).

Everything else (no row with a balance, a row older than the newest run, an unseen posting, no
run yet) is read from Moesif, one request per subscription.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime


def newest_window_start(
    windows: Iterable[tuple[datetime, Collection[str] | None]], companies: Collection[str]
) -> datetime | None:
    """Return the start of the newest window a run read for every one of ``companies``.

    Args:
        windows: ``(since, companies)`` of each run that concluded; ``None`` (or empty) for a
            run over every company.
        companies: the companies the check covers; empty for every company.
    """
    starts = [
        since for since, read in windows if not read or (companies and set(companies) <= set(read))
    ]
    return max(starts, default=None)


def read_from_moesif(
    latest_at: datetime | None, fresh_from: datetime | None, *, unseen_postings: bool
) -> bool:
    """Return whether a subscription's balance must be read from Moesif rather than its row.

    Args:
        latest_at: the time of its latest row carrying a balance (``None``: it has none).
        fresh_from: :func:`newest_window_start` (``None``: no run read Moesif yet).
        unseen_postings: a posting Moesif confirmed is not among its rows yet.
    """
    if latest_at is None or fresh_from is None or unseen_postings:
        return True
    return latest_at < fresh_from
