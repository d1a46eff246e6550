"""Which Moesif windows a run reads again so that every finding it re-checks is compared fresh."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconcile.domain.times import Window

MARGIN = timedelta(seconds=1)
"""Added after the subject's time, so the half-open window holds the subject itself."""


@dataclass(frozen=True)
class Point:
    """Where a finding's subject lies: a Moesif company (``None``: unknown) and a time."""

    company_id: str | None
    at: datetime


@dataclass(frozen=True)
class Reread:
    """One targeted read of Moesif's billing reports: a company (``None``: all) and a window."""

    company_id: str | None
    window: Window


def rereads(
    points: Iterable[Point],
    around: timedelta,
    covered: Window,
    covered_companies: Collection[str] = (),
) -> list[Reread]:
    """Return the reads that cover ``around`` each point, per company, merged where they touch.

    A window the run's own read holds already (``covered``, of ``covered_companies``, or of
    every company when none are named) is not read again. Reads come sorted by company, then
    time.

    Args:
        points: where the subjects of the findings re-checked lie.
        around: how far either side of a subject's time to read (the match window, so a row
            that could match the movement is seen).
        covered: what the run's own Moesif read spans.
        covered_companies: the companies the run's own read was limited to (``--company``).
    """
    spans: dict[str | None, list[Window]] = {}
    for point in points:
        spans.setdefault(point.company_id, []).append(
            Window(point.at - around, point.at + around + MARGIN)
        )
    reads: list[Reread] = []
    for company in sorted(spans, key=lambda name: (name is not None, name or "")):
        read_already = not covered_companies or company in covered_companies
        for window in _merged(spans[company]):
            inside = covered.since <= window.since and window.until <= covered.until
            if not (inside and read_already):
                reads.append(Reread(company, window))
    return reads


def _merged(windows: list[Window]) -> list[Window]:
    merged: list[Window] = []
    for window in sorted(windows, key=lambda each: each.since):
        if merged and window.since <= merged[-1].until:
            last = merged.pop()
            window = Window(last.since, max(last.until, window.until))
        merged.append(window)
    return merged
