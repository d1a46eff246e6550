"""Times and durations as operators write them: ISO 8601 instants, ``72h``-style durations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_SHORT = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$",
    re.IGNORECASE,
)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

MAX_DURATION = timedelta(days=3650)
"""The longest duration a setting may name; anything longer is a typo, not a wish."""

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""The earliest time a window may start: older dates are typos, and the window arithmetic
(minus lookback and match window) must stay far from ``datetime.min``."""

LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""The latest time a window may end, far from ``datetime.max`` for the same reason."""


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[since, until)`` in UTC."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        """Refuse naive times and empty or inverted windows."""
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("window times must be timezone-aware")
        if self.since >= self.until:
            raise ValueError(
                f"the window is empty: since {to_iso(self.since)} is not before "
                f"until {to_iso(self.until)}"
            )

    def contains(self, moment: datetime) -> bool:
        """Return whether ``moment`` lies inside the window."""
        return self.since <= moment < self.until

    def widened(self, by: timedelta) -> Window:
        """Return the window grown by ``by`` on both sides."""
        return Window(self.since - by, self.until + by)


def parse_when(text: str) -> datetime:
    """Parse an ISO 8601 date or date-time; without an offset it is UTC.

    Raises:
        ValueError: not a date, or outside [:data:`EARLIEST`, :data:`LATEST`); one line.
    """
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(raw)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
            moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is not an ISO 8601 date or date-time") from None
    if not EARLIEST <= moment < LATEST:
        raise ValueError(
            f"{text!r} is outside the dates a run can cover "
            f"({EARLIEST.date().isoformat()} to {LATEST.date().isoformat()})"
        )
    return moment


def parse_duration(text: str) -> timedelta:
    """Parse ``90m``, ``72h``, ``3d``, ``2w``, ``45s`` or ISO 8601 ``P3D``/``PT90M``.

    Raises:
        ValueError: not a duration, or longer than :data:`MAX_DURATION`; one line.
    """
    raw = text.strip()
    short = _SHORT.match(raw) if raw.isascii() else None
    iso = _ISO.match(raw) if raw.isascii() else None
    if short:
        parts = {_UNITS[short.group(2).lower()]: int(short.group(1))}
    elif iso and raw.upper() not in ("P", "PT") and any(iso.groupdict().values()):
        parts = {name: int(value) for name, value in iso.groupdict().items() if value}
    else:
        raise ValueError(f"{text!r} is not a duration (like 90m, 72h, 3d or P3D)")
    try:
        duration = timedelta(**parts)
    except OverflowError:
        duration = None
    if duration is None or duration > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than {MAX_DURATION.days} days")
    return duration


def to_iso(moment: datetime) -> str:
    """Format an aware time as ISO 8601 UTC with a ``Z``, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_unix(seconds: int) -> datetime:
    """Return the aware UTC time of a Unix timestamp (Stripe's ``created``)."""
    return datetime.fromtimestamp(seconds, tz=UTC)
