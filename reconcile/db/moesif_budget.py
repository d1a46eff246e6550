"""Moesif's requests per calendar minute, counted in PostgreSQL for every process at once.

One row per minute (``moesif_budget``); a request spends one unit with a single atomic
``INSERT … ON CONFLICT DO UPDATE … WHERE used < limit RETURNING used``: two processes can never
both take the last unit, and the minute is the database's clock, the same for every machine.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

_SPEND = text(
    """
    INSERT INTO moesif_budget (minute, used)
    VALUES (date_trunc('minute', clock_timestamp()), 1)
    ON CONFLICT (minute) DO UPDATE SET used = moesif_budget.used + 1
    WHERE moesif_budget.used < :limit
    RETURNING used
    """
)

_TO_NEXT_MINUTE = text(
    "SELECT EXTRACT(EPOCH FROM date_trunc('minute', clock_timestamp()) + interval '1 minute'"
    " - clock_timestamp())"
)

_FORGET = text("DELETE FROM moesif_budget WHERE minute < clock_timestamp() - interval '1 day'")


def spend(connection: Connection, limit: int) -> bool:
    """Spend one request of this minute if fewer than ``limit`` are spent; say whether it was."""
    return connection.execute(_SPEND, {"limit": limit}).first() is not None


def seconds_to_next_minute(connection: Connection) -> float:
    """Return how long until the database's next calendar minute begins."""
    return float(connection.execute(_TO_NEXT_MINUTE).scalar_one())


def forget_old(connection: Connection) -> None:
    """Drop the counts of minutes more than a day old."""
    connection.execute(_FORGET)


def peak(connection: Connection) -> int:
    """Return the most requests spent in any one minute kept."""
    return int(
        connection.execute(text("SELECT COALESCE(MAX(used), 0) FROM moesif_budget")).scalar_one()
    )
