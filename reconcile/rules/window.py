"""Which spans a run reads: its window (the request's, or from the watermark) and around it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reconcile.domain.times import Window
from reconcile.errors import UsageError

PENDING_HORIZON = timedelta(days=30)
"""How far before the usual start a run reaches back for a payment or refund still pending."""


def pending_start(since: datetime, pending_since: datetime | None) -> datetime:
    """Reach back to the oldest movement the last run saw pending, within PENDING_HORIZON."""
    if pending_since is None or pending_since >= since:
        return since
    return max(pending_since, since - PENDING_HORIZON)


def run_window(
    *,
    since: datetime | None,
    until: datetime | None,
    started_at: datetime,
    watermark: datetime | None,
    lookback: timedelta,
    pending_since: datetime | None,
    first_since: datetime | None = None,
) -> Window:
    """Return the window ``[since, until)`` a run reads.

    Args:
        since: the requested start; ``None`` continues from the watermark minus ``lookback``,
            reaching back further for a movement the last run saw pending.
        until: the requested end; ``None`` is the run's start.
        started_at: when the run started.
        watermark: where the last successful full run ended, if any did.
        lookback: how far before the watermark a continuing run starts.
        pending_since: the oldest movement the last successful full run saw pending.
        first_since: with ``since=None`` and no watermark, the start (an unattended first run).

    Raises:
        UsageError: no start can be found, or the window is empty or reversed.
    """
    if since is None:
        since = continued_start(watermark, lookback, pending_since, first_since)
    try:
        return Window(since, until or started_at)
    except ValueError as error:
        raise UsageError(str(error)) from None


def continued_start(
    watermark: datetime | None,
    lookback: timedelta,
    pending_since: datetime | None,
    first_since: datetime | None,
) -> datetime:
    """Return where a run with no requested start begins: the watermark minus ``lookback``.

    Before the first successful run (no watermark) it is ``first_since``, if the caller gave one.

    Raises:
        UsageError: neither a watermark nor ``first_since``.
    """
    if watermark is not None:
        return pending_start(watermark - lookback, pending_since)
    if first_since is not None:
        return first_since
    raise UsageError(
        "no --since given and no earlier successful run to continue from; "
        "pass --since for the first run"
    )


@dataclass(frozen=True)
class Spans:
    """The time spans of one run: its window, and what it reads and compares around it."""

    window: Window
    """The run's own ``[since, until)``: its findings, its watermark."""
    wide: Window
    """The window grown by the match window on both sides: what is loaded and compared."""
    stripe: Window
    """What Stripe is read over: the wide window, cut at now (a window ending later is read
    to its end)."""
    moesif: Window
    """What Moesif is read over: the wide window, reaching on to now. Rows posted for the
    window later (by an earlier run, or a late webhook) carry the time they were posted."""


def run_spans(window: Window, match_window: timedelta, now: datetime) -> Spans:
    """Return the spans a run of ``window`` reads and compares, at ``now``."""
    wide = window.widened(match_window)
    return Spans(
        window=window,
        wide=wide,
        stripe=Window(wide.since, min(wide.until, max(now, window.until))),
        moesif=Window(wide.since, max(now, wide.until)),
    )
