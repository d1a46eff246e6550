"""The front page's charts: a signed chart per currency keeps owed and over-credited apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from reconcile.operator.console.chart import HEIGHT, MARGIN, build_signed_chart

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
MOMENTS = [T0, T0 + timedelta(days=1), T0 + timedelta(days=2)]


def _ys(points: str) -> list[int]:
    return [int(pair.split(",")[1]) for pair in points.split()]


def test_owed_lies_above_zero_and_over_credited_below_and_they_never_cancel() -> None:
    owed = {MOMENTS[0]: Decimal(30), MOMENTS[2]: Decimal(10)}
    over = {MOMENTS[0]: Decimal(-10), MOMENTS[1]: Decimal(-10), MOMENTS[2]: Decimal(-10)}
    chart = build_signed_chart(
        MOMENTS, [("owed", "#d00", owed), ("over", "#00d", over)], lambda v: f"{v:+} USD"
    )
    assert chart.maximum == "+30 USD"
    assert chart.minimum == "-10 USD"
    assert chart.zero is not None
    owed_line, over_line = chart.series
    assert owed_line.latest == "+10 USD"  # not netted with -10 to zero
    assert over_line.latest == "-10 USD"
    assert all(y < chart.zero for y in _ys(owed_line.points)[::2])  # 30 and 10 above zero
    assert _ys(owed_line.points)[1] == chart.zero  # nothing owed at the middle run: on zero
    assert all(y > chart.zero for y in _ys(over_line.points))
    assert _ys(owed_line.points)[0] == MARGIN  # the top is the largest owed amount
    assert _ys(over_line.points)[0] == HEIGHT - MARGIN  # the bottom the largest over-credit


def test_a_currency_only_owed_has_zero_at_the_bottom() -> None:
    chart = build_signed_chart(
        MOMENTS, [("owed", "#d00", {MOMENTS[2]: Decimal(5)}), ("over", "#00d", {})], str
    )
    assert chart.zero == HEIGHT - MARGIN
    assert chart.minimum == "0"
    assert _ys(chart.series[1].points) == [HEIGHT - MARGIN] * 3


def test_no_runs_no_lines() -> None:
    chart = build_signed_chart([], [("owed", "#d00", {})], str)
    assert chart.series == ()
