"""Ranking findings by amount never compares raw numbers across currencies."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reconcile.rules.amount_rank import Sized, by_amount


def _ids(findings: list[Sized]) -> list[str]:
    return [findings[index].finding_id for index in by_amount(findings)]


def test_the_largest_of_each_currency_comes_before_the_second_of_any() -> None:
    findings = [
        Sized("jpy-5000", "jpy", 5000),  # 5,000 JPY: about 33 USD, and 5000 as a raw number
        Sized("usd-100", "usd", 10000),  # 100.00 USD: 10000 minor units
        Sized("usd-30", "usd", -3000),
        Sized("jpy-90", "JPY", 90),
        Sized("eur-40", "eur", 4000),
    ]
    assert _ids(findings) == ["eur-40", "jpy-5000", "usd-100", "jpy-90", "usd-30"]


def test_blocked_but_owed_come_first_unknown_amounts_last() -> None:
    findings = [
        Sized("big", "usd", -900000),
        Sized("unknown", "usd", None),
        Sized("no-currency", None, 100),
        Sized("blocked-owed", "usd", 500, blocked=True),
        Sized("blocked-over", "usd", -700, blocked=True),  # blocked but not owed: no precedence
    ]
    assert _ids(findings) == ["blocked-owed", "big", "blocked-over", "no-currency", "unknown"]


@given(
    st.lists(
        st.tuples(st.sampled_from(["usd", "jpy", "eur"]), st.integers(-(10**9), 10**9)),
        max_size=30,
    )
)
def test_within_one_currency_larger_absolute_deltas_come_first(
    drawn: list[tuple[str, int]],
) -> None:
    findings = [Sized(f"F-{i:03d}", code, delta) for i, (code, delta) in enumerate(drawn)]
    order = by_amount(findings)
    assert sorted(order) == list(range(len(findings)))
    for code in ("usd", "jpy", "eur"):
        sizes = [abs(findings[i].delta_minor or 0) for i in order if findings[i].currency == code]
        assert sizes == sorted(sizes, reverse=True)
