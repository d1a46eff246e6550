"""Which Moesif windows a run reads again for the findings it re-checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconcile.domain.times import Window
from reconcile.rules.rereads import MARGIN, Point, Reread, rereads

T = datetime(2026, 10, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
RECENT = Window(T + timedelta(days=30), T + timedelta(days=37))


def test_each_subject_is_read_around_its_time_on_its_company() -> None:
    reads = rereads([Point("acme", T), Point("globex", T + HOUR)], HOUR, RECENT)
    assert reads == [
        Reread("acme", Window(T - HOUR, T + HOUR + MARGIN)),
        Reread("globex", Window(T, T + 2 * HOUR + MARGIN)),
    ]


def test_subjects_of_one_company_close_in_time_are_read_once() -> None:
    reads = rereads(
        [Point("acme", T + HOUR), Point("acme", T), Point("acme", T + 9 * HOUR)], HOUR, RECENT
    )
    assert reads == [
        Reread("acme", Window(T - HOUR, T + 2 * HOUR + MARGIN)),
        Reread("acme", Window(T + 8 * HOUR, T + 10 * HOUR + MARGIN)),
    ]


def test_a_subject_the_run_read_already_is_not_read_again() -> None:
    inside = RECENT.since + timedelta(days=1)
    assert rereads([Point("acme", inside)], HOUR, RECENT) == []


def test_a_subject_of_no_known_company_is_read_for_every_company() -> None:
    assert rereads([Point(None, T)], HOUR, RECENT) == [
        Reread(None, Window(T - HOUR, T + HOUR + MARGIN))
    ]


def test_a_run_limited_to_some_companies_reads_the_others_subjects_again() -> None:
    inside = RECENT.since + timedelta(days=1)
    points = [Point("acme", inside), Point("globex", inside)]
    assert rereads(points, HOUR, RECENT, covered_companies=["acme"]) == [
        Reread("globex", Window(inside - HOUR, inside + HOUR + MARGIN))
    ]
