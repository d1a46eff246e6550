"""The open-drift chart as plain values: series per category, scaled into SVG coordinates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def _x(index: int, count: int) -> int:
    usable = WIDTH - 2 * MARGIN
    return MARGIN + (usable * index // (count - 1) if count > 1 else usable // 2)


def _y(value: Decimal, scale: Decimal) -> int:
    usable = HEIGHT - 2 * MARGIN
    return int(HEIGHT - MARGIN - (value / scale) * usable)


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}" if value == value.to_integral_value() else str(value)
