"""A finding's priority and due time from its amount and age (contract section 10a)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.rules.priority import (
    DEFAULT_RULES,
    Level,
    Priority,
    PriorityRules,
    assess,
)

SEEN = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("delta", "currency", "expected"),
    [
        (1_000_000, "usd", Priority.CRITICAL),  # 10,000.00
        (-1_000_000, "usd", Priority.CRITICAL),  # over-credited counts by its absolute size
        (999_999, "usd", Priority.HIGH),
        (100_000, "usd", Priority.HIGH),
        (-10_000, "eur", Priority.MEDIUM),  # 100.00
        (9_999, "usd", Priority.LOW),
        (10_000, "jpy", Priority.CRITICAL),  # 10,000 yen: major units of its own currency
        (999, "jpy", Priority.MEDIUM),
        (100_000, "kwd", Priority.MEDIUM),  # 100.000 dinars
        (99_999, "kwd", Priority.LOW),
        (0, "usd", Priority.LOW),
    ],
)
def test_the_amount_alone_earns_a_priority_in_major_units(
    delta: int, currency: str, expected: Priority
) -> None:
    assert assess(delta, currency, SEEN, SEEN).priority is expected


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (DAY - timedelta(seconds=1), Priority.LOW),
        (DAY, Priority.MEDIUM),
        (3 * DAY, Priority.HIGH),
        (5 * DAY, Priority.CRITICAL),
        (400 * DAY, Priority.CRITICAL),
    ],
)
def test_age_alone_earns_a_priority(age: timedelta, expected: Priority) -> None:
    assert assess(1, "usd", SEEN, SEEN + age).priority is expected


def test_the_higher_of_amount_and_age_wins() -> None:
    assert assess(100_000, "usd", SEEN, SEEN + DAY).priority is Priority.HIGH
    assert assess(10_000, "usd", SEEN, SEEN + 5 * DAY).priority is Priority.CRITICAL


@pytest.mark.parametrize(
    ("delta", "due_in"),
    [(1_000_000, 24 * HOUR), (100_000, 72 * HOUR), (10_000, 5 * DAY), (1, 7 * DAY)],
)
def test_a_finding_earning_its_priority_by_amount_is_due_from_first_seen(
    delta: int, due_in: timedelta
) -> None:
    assessed = assess(delta, "usd", SEEN, SEEN + HOUR)
    assert assessed.since == SEEN
    assert assessed.due_at == SEEN + due_in


def test_aging_never_moves_the_due_time_later() -> None:
    # A small finding: low due in 7 days; medium at day 1 due 5 days later; high at day 3 due
    # 72 h later: the earliest of these (day 6) stands.
    due = [assess(1, "usd", SEEN, SEEN + age).due_at for age in (0 * DAY, DAY, 3 * DAY, 5 * DAY)]
    assert due == [SEEN + 7 * DAY, SEEN + 6 * DAY, SEEN + 6 * DAY, SEEN + 6 * DAY]
    # A medium amount (due day 5) turning high by age (due day 6) keeps day 5.
    assert assess(10_000, "usd", SEEN, SEEN + 3 * DAY).due_at == SEEN + 5 * DAY
    assert assess(10_000, "usd", SEEN, SEEN + 3 * DAY).since == SEEN + 3 * DAY


def test_overdue_only_after_the_due_time() -> None:
    assessed = assess(1_000_000, "usd", SEEN, SEEN)
    assert not assessed.overdue(SEEN + 24 * HOUR)
    assert assessed.overdue(SEEN + 24 * HOUR + timedelta(seconds=1))


def test_an_unknown_amount_or_currency_counts_by_age_only() -> None:
    assert assess(None, "usd", SEEN, SEEN).priority is Priority.LOW
    assert assess(10**9, None, SEEN, SEEN).priority is Priority.LOW
    assert assess(10**9, "x-1", SEEN, SEEN + 3 * DAY).priority is Priority.HIGH


def test_a_first_seen_in_the_future_counts_as_age_zero() -> None:
    assert assess(1, "usd", SEEN + DAY, SEEN).priority is Priority.LOW


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        assess(1, "usd", SEEN.replace(tzinfo=None), SEEN)


def test_the_queue_sorts_by_priority_then_due_time() -> None:
    low = assess(1, "usd", SEEN, SEEN)
    critical_later = assess(1_000_000, "usd", SEEN + HOUR, SEEN + HOUR)
    critical = assess(1_000_000, "usd", SEEN, SEEN + HOUR)
    ordered = sorted([low, critical_later, critical], key=lambda a: a.queue_key())
    assert ordered == [critical, critical_later, low]


def test_thresholds_are_configurable() -> None:
    levels = tuple(
        dataclasses.replace(level, amount_major=level.amount_major // 10)
        for level in DEFAULT_RULES.levels
    )
    rules = PriorityRules(levels=levels, low_due_in=2 * DAY)
    assert assess(100_000, "usd", SEEN, SEEN, rules).priority is Priority.CRITICAL
    assert assess(1, "usd", SEEN, SEEN, rules).due_at == SEEN + 2 * DAY


@pytest.mark.parametrize(
    "levels",
    [
        DEFAULT_RULES.levels[:2],
        tuple(reversed(DEFAULT_RULES.levels)),
        (Level(Priority.CRITICAL, -1, DAY, DAY), *DEFAULT_RULES.levels[1:]),
        (Level(Priority.CRITICAL, 1, DAY, timedelta(0)), *DEFAULT_RULES.levels[1:]),
    ],
)
def test_contradictory_thresholds_are_refused(levels: tuple[Level, ...]) -> None:
    with pytest.raises(ValueError, match="priority|must"):
        PriorityRules(levels=levels)


@given(
    delta=st.one_of(st.none(), st.integers(-(10**12), 10**12)),
    currency=st.sampled_from(["usd", "jpy", "kwd", "eur"]),
    ages=st.lists(st.integers(0, 20 * 24 * 3600), min_size=2, max_size=6),
)
def test_as_a_finding_ages_its_priority_never_falls_and_its_due_time_never_moves_later(
    delta: int | None, currency: str, ages: list[int]
) -> None:
    seen = [assess(delta, currency, SEEN, SEEN + timedelta(seconds=age)) for age in sorted(ages)]
    for before, after in zip(seen, seen[1:], strict=False):
        assert after.priority.rank <= before.priority.rank
        assert after.due_at <= before.due_at
