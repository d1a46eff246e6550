"""When a subscription's currency already known may be used without asking Moesif again."""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_AGE = timedelta(days=7)
"""How long a subscription's currency read from Moesif is trusted."""


def disagrees(currency: str | None, expect: str | None) -> bool:
    """Whether a known currency differs from the payment's (so it is read again before belief)."""
    return expect is not None and currency != expect.lower()


def kept_is_fresh(
    currency: str | None,
    fetched_at: datetime,
    *,
    now: datetime,
    expect: str | None,
    max_age: timedelta = MAX_AGE,
) -> bool:
    """Whether a currency kept by an earlier run may be used: young enough, and not disagreeing.

    Args:
        currency: the kept currency (``None``: Moesif names none).
        fetched_at: when it was read from Moesif.
        now: the current time.
        expect: the payment's currency, when one is at hand.
        max_age: how long a kept currency is trusted.
    """
    return now - fetched_at < max_age and not disagrees(currency, expect)
