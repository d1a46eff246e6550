"""When a subscription's currency already known may be used without asking Moesif again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

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


def kept_are_fresh(
    currencies: Sequence[str | None],
    fetched_at: pd.Series,
    *,
    now: datetime,
    expect: Sequence[str | None],
    max_age: timedelta = MAX_AGE,
) -> npt.NDArray[np.bool_]:
    """Return :func:`kept_is_fresh` of many kept currencies at once, position by position.

    Args:
        currencies: the kept currencies (``None``: Moesif names none).
        fetched_at: when each was read, aware times (missing: never read, so not fresh).
        now: the current time.
        expect: each payment's currency (``None``: none at hand).
        max_age: how long a kept currency is trusted.
    """
    young = (fetched_at > now - max_age).to_numpy(dtype=bool, na_value=False)
    present = np.array([value is not None for value in expect], dtype=bool)
    lower = np.array([None if value is None else value.lower() for value in expect], dtype=object)
    disagreeing = present & (np.array(currencies, dtype=object) != lower)
    return np.asarray(young & ~disagreeing, dtype=bool)
