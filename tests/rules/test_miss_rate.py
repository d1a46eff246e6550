"""The live path's miss rate from postings' origins, per day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from reconcile.domain import origin
from reconcile.rules.miss_rate import Day, MissRate, is_top_up_credit, miss_rate

T = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)


def test_runs_postings_are_the_missed_ones_per_utc_day() -> None:
    found = miss_rate(
        [
            (T, origin.for_run("20261201T020000Z-abcdef")),
            (T, origin.for_webhook("evt_1")),
            (T + timedelta(hours=1), origin.for_top_up("key-1")),  # the next UTC day
            (T + timedelta(hours=1), origin.for_run("20261202T020000Z-abcdef")),
        ]
    )

    assert found.days == (Day(date(2026, 12, 1), 1, 2), Day(date(2026, 12, 2), 1, 2))
    assert (found.missed, found.total, found.rate) == (2, 4, Decimal("0.5000"))


def test_no_top_ups_has_no_rate() -> None:
    assert MissRate(()).rate is None
    assert MissRate(()).as_dict() == {"rate": None, "missed": 0, "total": 0, "days": 30}


def test_the_rate_is_exact_to_four_places() -> None:
    found = miss_rate([(T, origin.for_run("r"))] + [(T, origin.for_webhook("e"))] * 2)
    assert found.as_dict()["rate"] == "0.3333"


def test_only_top_up_credits_count() -> None:
    assert is_top_up_credit("pi_1", "credit")
    assert not is_top_up_credit("txn_1", "credit")  # a dispute reinstated
    assert not is_top_up_credit("re_1", "debit")
