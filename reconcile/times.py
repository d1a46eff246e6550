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
    """Parse an ISO 8601 date or date-time; without an offset it is UTC. Raise ValueError."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date or date-time") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_duration(text: str) -> timedelta:
    """Parse ``90m``, ``72h``, ``3d``, ``2w``, ``45s`` or ISO 8601 ``P3D``/``PT90M``."""
    raw = text.strip()
    short = _SHORT.match(raw)
    if short:
        return timedelta(**{_UNITS[short.group(2).lower()]: int(short.group(1))})
    iso = _ISO.match(raw)
    if iso and raw.upper() not in ("P", "PT") and any(iso.groupdict().values()):
        parts = {name: int(value) for name, value in iso.groupdict().items() if value}
        return timedelta(**parts)
    raise ValueError(f"{text!r} is not a duration (like 90m, 72h, 3d or P3D)")


def to_iso(moment: datetime) -> str:
    """Format an aware time as ISO 8601 UTC with a ``Z``, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_unix(seconds: int) -> datetime:
    """Return the aware UTC time of a Unix timestamp (Stripe's ``created``)."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def to_unix(moment: datetime) -> int:
    """Return the Unix timestamp of an aware time, for Stripe's ``created`` filters."""
    return int(moment.timestamp())
