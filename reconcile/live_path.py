"""How well the live path works: its miss rate, measured from the postings table."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from reconcile.db.postings import top_up_credits
from reconcile.rules.miss_rate import DAYS, MissRate, miss_rate


def measure(session: Session, now: datetime) -> MissRate:
    """Return the miss rate of the top-up credits posted in the :data:`DAYS` days up to ``now``."""
    return miss_rate(top_up_credits(session, now - timedelta(days=DAYS)))
