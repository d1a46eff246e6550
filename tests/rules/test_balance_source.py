"""Where a subscription's balance comes from: its latest row, unless something moved it since."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconcile.rules.balance_source import newest_window_start, read_from_moesif

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_the_newest_window_read_for_every_company_counts() -> None:
    windows = [(NOW - 3 * DAY, None), (NOW - DAY, ("acme",)), (NOW - 2 * DAY, ())]
    assert newest_window_start(windows, ()) == NOW - 2 * DAY  # acme's run read acme only
    assert newest_window_start(windows, ("acme",)) == NOW - DAY
    assert newest_window_start(windows, ("acme", "globex")) == NOW - 2 * DAY
    assert newest_window_start([(NOW, ("acme",))], ()) is None
    assert newest_window_start([], ()) is None


def test_a_row_in_the_newest_window_is_used_and_everything_else_is_read() -> None:
    fresh_from = NOW - DAY
    assert not read_from_moesif(NOW - DAY, fresh_from, unseen_postings=False)
    assert not read_from_moesif(NOW - timedelta(hours=1), fresh_from, unseen_postings=False)
    assert read_from_moesif(NOW - DAY - timedelta(seconds=1), fresh_from, unseen_postings=False)
    assert read_from_moesif(None, fresh_from, unseen_postings=False)  # no row with a balance
    assert read_from_moesif(NOW, None, unseen_postings=False)  # no run read Moesif yet
    # A confirmed posting no row shows moved the balance after the latest row.
    assert read_from_moesif(NOW - timedelta(hours=1), fresh_from, unseen_postings=True)
