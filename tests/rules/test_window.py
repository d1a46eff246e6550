"""The window a run reads: requested, or from the watermark, reaching back for pending ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconcile.domain.times import Window
from reconcile.errors import UsageError
from reconcile.rules.window import PENDING_HORIZON, pending_start, run_window

NOW = datetime(2026, 11, 24, 2, tzinfo=UTC)
LOOKBACK = timedelta(hours=72)


def _window(**given: object) -> Window:
    values: dict[str, object] = {
        "since": None,
        "until": None,
        "started_at": NOW,
        "watermark": None,
        "lookback": LOOKBACK,
        "pending_since": None,
    }
    values.update(given)
    return run_window(**values)  # type: ignore[arg-type]


def test_a_requested_window_is_taken_as_given_ending_at_the_start_by_default() -> None:
    since = NOW - timedelta(days=7)
    assert _window(since=since) == Window(since, NOW)
    assert _window(since=since, until=NOW - timedelta(days=1)) == Window(
        since, NOW - timedelta(days=1)
    )


def test_without_since_the_run_continues_from_the_watermark_minus_the_lookback() -> None:
    watermark = NOW - timedelta(days=1)
    assert _window(watermark=watermark) == Window(watermark - LOOKBACK, NOW)


def test_without_since_or_watermark_the_run_refuses() -> None:
    with pytest.raises(UsageError, match="pass --since"):
        _window()


def test_without_since_or_watermark_an_unattended_run_starts_where_its_caller_said() -> None:
    first = NOW - LOOKBACK
    assert _window(first_since=first) == Window(first, NOW)
    # Once there is a watermark, it decides; the caller's first start no longer counts.
    watermark = NOW - timedelta(hours=1)
    assert _window(first_since=first, watermark=watermark) == Window(watermark - LOOKBACK, NOW)
    # A requested start wins over both.
    since = NOW - timedelta(days=9)
    assert _window(since=since, first_since=first, watermark=watermark) == Window(since, NOW)


def test_an_empty_window_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="empty"):
        _window(since=NOW, until=NOW)


def test_a_pending_movement_pulls_the_start_back_within_the_horizon() -> None:
    since = NOW - LOOKBACK
    assert pending_start(since, None) == since
    assert pending_start(since, since + timedelta(hours=1)) == since
    assert pending_start(since, since - timedelta(days=3)) == since - timedelta(days=3)
    assert pending_start(since, since - timedelta(days=90)) == since - PENDING_HORIZON
    watermark = NOW - timedelta(days=1)
    pending = watermark - LOOKBACK - timedelta(days=2)
    assert _window(watermark=watermark, pending_since=pending).since == pending


def test_a_pending_movement_does_not_move_a_requested_start() -> None:
    since = NOW - timedelta(days=1)
    assert _window(since=since, pending_since=since - timedelta(days=3)).since == since
