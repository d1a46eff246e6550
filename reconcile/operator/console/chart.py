"""The front page's charts as plain values: lines scaled into SVG coordinates, no script.

:func:`build_chart` draws counts from zero up; :func:`build_signed_chart` draws one currency's
drift with zero in its place, what customers are owed above it and what Moesif holds too much
below it, as separate lines that never cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

WIDTH = 640
HEIGHT = 160
MARGIN = 30
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f",
)  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One line of the chart: its label, colour, points and latest value."""

    label: str
    colour: str
    points: str
    """SVG ``polyline`` points, ``x,y`` pairs separated by spaces."""
    latest: str


@dataclass(frozen=True)
class Chart:
    """A chart ready for the template: its lines, the y-axis maximum and the time range."""

    series: tuple[Series, ...]
    maximum: str
    first: datetime | None
    last: datetime | None
    width: int = WIDTH
    height: int = HEIGHT
    minimum: str = "0"
    """The y-axis minimum (below zero on a signed chart)."""
    zero: int | None = None
    """The y of the zero line on a signed chart; ``None`` on a chart from zero up."""


def build_chart(
    moments: Sequence[datetime], values: Mapping[str, Mapping[datetime, Decimal]]
) -> Chart:
    """Return a line per label of ``values`` over ``moments`` (a missing value counts as zero)."""
    if not moments:
        return Chart((), "0", None, None)
    top = max((v for by_time in values.values() for v in by_time.values()), default=Decimal(0))
    scale = top if top > 0 else Decimal(1)
    series = []
    for index, (label, by_time) in enumerate(sorted(values.items())):
        points = " ".join(
            f"{_x(i, len(moments))},{_y(by_time.get(moment, Decimal(0)), scale)}"
            for i, moment in enumerate(moments)
        )
        latest = by_time.get(moments[-1], Decimal(0))
        series.append(Series(label, PALETTE[index % len(PALETTE)], points, _plain(latest)))
    return Chart(tuple(series), _plain(top), moments[0], moments[-1])


def build_signed_chart(
    moments: Sequence[datetime],
    values: Sequence[tuple[str, str, Mapping[datetime, Decimal]]],
    shown: Callable[[Decimal], str],
) -> Chart:
    """Return a chart around zero: a line per ``(label, colour, values)``, in that order.

    The y-axis runs from the lowest value (or zero) to the highest (or zero), so a positive
    line lies above the zero line and a negative one below it; ``shown`` writes the axis' ends
    and each line's latest value (a missing value counts as zero).
    """
    if not moments:
        return Chart((), "0", None, None)
    every = [value for _, _, by_time in values for value in by_time.values()]
    top = max([Decimal(0), *every])
    bottom = min([Decimal(0), *every])
    span = top - bottom if top > bottom else Decimal(1)
    series = tuple(
        Series(
            label,
            colour,
            " ".join(
                f"{_x(i, len(moments))},{_y(by_time.get(moment, Decimal(0)) - bottom, span)}"
                for i, moment in enumerate(moments)
            ),
            shown(by_time.get(moments[-1], Decimal(0))),
        )
        for label, colour, by_time in values
    )
    return Chart(
        series,
        shown(top),
        moments[0],
        moments[-1],
        minimum=shown(bottom),
        zero=_y(-bottom, span),
    )


def _x(index: int, count: int) -> int:
    usable = WIDTH - 2 * MARGIN
    return MARGIN + (usable * index // (count - 1) if count > 1 else usable // 2)


def _y(value: Decimal, scale: Decimal) -> int:
    usable = HEIGHT - 2 * MARGIN
    return int(HEIGHT - MARGIN - (value / scale) * usable)


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}" if value == value.to_integral_value() else str(value)
