"""How urgent a finding is, and when it is due, from its amount and its age (contract section 10a).

A finding's priority is the higher of what its absolute ``delta`` (in major units of its own
currency) and its age since it was first seen earn: by default critical at 10,000 or 5 days (due
in 24 h), high at 1,000 or 3 days (72 h), medium at 100 or 1 day (5 days), low otherwise (7 days).
Each priority a finding has earned makes it due that long after it earned it (at ``first_seen``
when its amount earns it, at ``first_seen`` plus the age threshold when its age does); the
earliest of these is its due time. So a due time never moves later as a finding ages, and a
finding past its due time is overdue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from reconcile.domain.money import exponent, is_iso_currency


class Priority(StrEnum):
    """How urgent a finding is, most urgent first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Return 0 for the most urgent, 3 for the least, to sort by."""
        return _RANKS[self]


_RANKS = {priority: rank for rank, priority in enumerate(Priority)}


@dataclass(frozen=True)
class Level:
    """One priority above low: the amount or the age that earns it, and how long it may wait.

    Attributes:
        priority: the priority it gives.
        amount_major: an absolute delta of at least this many major units earns it.
        age: a finding first seen at least this long ago earns it.
        due_in: how long after earning it the finding is due.
    """

    priority: Priority
    amount_major: int
    age: timedelta
    due_in: timedelta


DEFAULT_LEVELS = (
    Level(Priority.CRITICAL, 10_000, timedelta(days=5), timedelta(hours=24)),
    Level(Priority.HIGH, 1_000, timedelta(days=3), timedelta(hours=72)),
    Level(Priority.MEDIUM, 100, timedelta(days=1), timedelta(days=5)),
)
"""Section 10a's default thresholds, most urgent first."""


@dataclass(frozen=True)
class PriorityRules:
    """The thresholds priorities are decided by; the defaults are section 10a's.

    Attributes:
        levels: critical, high and medium, in that order, each with its thresholds.
        low_due_in: how long after it was first seen a low finding is due.

    Raises:
        ValueError: the levels are not critical, high, medium in that order, a threshold is
            negative, or a due time is not positive.
    """

    levels: tuple[Level, ...] = DEFAULT_LEVELS
    low_due_in: timedelta = field(default=timedelta(days=7))

    def __post_init__(self) -> None:
        """Refuse thresholds that would make priorities contradict each other."""
        names = tuple(level.priority for level in self.levels)
        if names != (Priority.CRITICAL, Priority.HIGH, Priority.MEDIUM):
            raise ValueError("priority levels must be critical, high, medium, in that order")
        for level in self.levels:
            if level.amount_major < 0 or level.age < timedelta(0):
                raise ValueError(f"the {level.priority} thresholds must not be negative")
            if level.due_in <= timedelta(0):
                raise ValueError(f"the {level.priority} due time must be positive")
        if self.low_due_in <= timedelta(0):
            raise ValueError("the low due time must be positive")


DEFAULT_RULES = PriorityRules()


@dataclass(frozen=True)
class Assessment:
    """A finding's priority, since when it has it, and when it is due."""

    priority: Priority
    since: datetime
    due_at: datetime

    def overdue(self, now: datetime) -> bool:
        """Return whether the finding is past its due time at ``now``."""
        return now > self.due_at

    def queue_key(self) -> tuple[int, datetime]:
        """Return the key the exception queue sorts by: priority, then due time."""
        return (self.priority.rank, self.due_at)


def assess(
    delta_minor: int | None,
    currency: str | None,
    first_seen: datetime,
    now: datetime,
    rules: PriorityRules = DEFAULT_RULES,
) -> Assessment:
    """Return a finding's priority and due time at ``now``.

    Args:
        delta_minor: the finding's signed delta in minor units (section 7); ``None`` when
            unknown (an unreadable record), so only its age counts.
        currency: the delta's currency; without an ISO code only the age counts.
        first_seen: when a run first reported the finding (aware).
        now: the time to judge at (aware); a ``first_seen`` after it counts as age zero.
        rules: the thresholds.

    Raises:
        ValueError: a time is naive.
    """
    if first_seen.tzinfo is None or now.tzinfo is None:
        raise ValueError("priority needs aware times")
    age = max(now - first_seen, timedelta(0))
    amount = abs(delta_minor) if delta_minor is not None and is_iso_currency(currency) else None
    priority, since, due_at = Priority.LOW, first_seen, first_seen + rules.low_due_in
    for level in reversed(rules.levels):
        by_amount = amount is not None and amount >= _minor(level.amount_major, str(currency))
        if by_amount or age >= level.age:
            priority, since = level.priority, first_seen if by_amount else first_seen + level.age
            due_at = min(due_at, since + level.due_in)
    return Assessment(priority, since, due_at)


def _minor(amount_major: int, currency: str) -> int:
    """Return a whole major-unit threshold in the currency's minor units."""
    return amount_major * int(10 ** exponent(currency))
