"""How often the live path missed a payment: top-up credits the nightly run had to post.

Every top-up credit is posted once, by whoever first asks (``postings.origin``): the webhook or
``/top-up`` when the live path works, a reconciliation run when it did not. So the share of
top-up credits a run posted is the live path's miss rate. Top-ups are the ``pi_…`` credits;
refunds, disputes and their reversals never come through the live path as credits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from reconcile.domain.origin import run_id_of

TOP_UP_PREFIX = "pi_"
"""The transaction ids of top-ups: their PaymentIntents."""
DAYS = 30
"""How many days, up to now, the miss rate is taken over."""
_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class Day:
    """One day's top-up credits: how many a run posted (missed) and how many in all."""

    day: date
    missed: int
    total: int


@dataclass(frozen=True)
class MissRate:
    """The top-up credits of a span of days, per day, and the share a run had to post."""

    days: tuple[Day, ...]

    @property
    def missed(self) -> int:
        """Return how many top-up credits a run posted."""
        return sum(day.missed for day in self.days)

    @property
    def total(self) -> int:
        """Return how many top-up credits were posted in all."""
        return sum(day.total for day in self.days)

    @property
    def rate(self) -> Decimal | None:
        """Return missed over total, to four places; ``None`` when there were no top-ups."""
        if not self.total:
            return None
        return (Decimal(self.missed) / Decimal(self.total)).quantize(_PLACES, ROUND_HALF_EVEN)

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values (the rate a decimal string, or ``None``)."""
        rate = self.rate
        return {
            "rate": None if rate is None else str(rate),
            "missed": self.missed,
            "total": self.total,
            "days": DAYS,
        }


def is_top_up_credit(transaction_id: str, entry_type: str) -> bool:
    """Return whether a posting is a top-up's credit, the live path's to post."""
    return entry_type == "credit" and transaction_id.startswith(TOP_UP_PREFIX)


def missed(origin: str) -> bool:
    """Return whether a posting's origin is a reconciliation run (the live path missed it)."""
    return run_id_of(origin) is not None


def miss_rate(postings: Iterable[tuple[datetime, str]]) -> MissRate:
    """Return the miss rate of top-up credits given as ``(created_at, origin)``, per UTC day."""
    by_run: Counter[date] = Counter()
    every: Counter[date] = Counter()
    for created_at, origin in postings:
        day = created_at.date()
        every[day] += 1
        by_run[day] += missed(origin)
    return MissRate(tuple(Day(day, by_run[day], every[day]) for day in sorted(every)))
