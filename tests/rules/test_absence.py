"""When a Moesif read proves a row absent: cut-off answers, narrowing, targeted re-reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconcile.rules.absence import (
    NARROWEST_WINDOW,
    TARGET_MARGIN,
    DroppedRow,
    Suspect,
    TargetedRead,
    can_narrow,
    concluded_gone,
    cut_off,
    dropped_row_detail,
    targeted_reads,
)

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rows", "cap", "cut"),
    [(0, 1000, False), (999, 1000, False), (1000, 1000, True), (1001, 1000, True), (1, 1, True)],
)
def test_an_answer_at_the_cap_or_over_it_is_cut_off(rows: int, cap: int, cut: bool) -> None:
    assert cut_off(rows, cap) is cut


def test_only_windows_longer_than_one_second_can_be_narrowed() -> None:
    assert NARROWEST_WINDOW == timedelta(seconds=1)
    assert can_narrow(T0, T0 + timedelta(seconds=1, microseconds=1))
    assert not can_narrow(T0, T0 + timedelta(seconds=1))
    assert not can_narrow(T0, T0 + timedelta(milliseconds=300))


def _suspect(moesif_id: str, minutes: float, company: str = "acme", sub: str = "sub_a") -> Suspect:
    return Suspect(moesif_id, company, sub, T0 + timedelta(minutes=minutes))


def test_each_suspect_is_read_again_on_its_company_around_its_time() -> None:
    [read] = targeted_reads([_suspect("r1", 0)])
    assert read == TargetedRead("acme", T0 - TARGET_MARGIN, T0 + TARGET_MARGIN, frozenset({"r1"}))
    assert read.until - read.since <= timedelta(minutes=2)


def test_suspects_close_in_time_on_one_subscription_share_a_read() -> None:
    reads = targeted_reads(_all())
    assert [(read.company_id, sorted(read.moesif_ids)) for read in reads] == [
        ("acme", ["r1", "r2"]),
        ("acme", ["r3"]),
        ("acme", ["r5"]),
        ("globex", ["r4"]),
    ]
    first = reads[0]
    assert (first.since, first.until) == (T0 - TARGET_MARGIN, T0 + timedelta(minutes=2.5))
    for read in reads:
        for moesif_id in read.moesif_ids:
            [suspect] = [s for s in _all() if s.moesif_id == moesif_id]
            assert read.since <= suspect.created_at < read.until


def _all() -> list[Suspect]:
    return [
        _suspect("r3", 90),
        _suspect("r1", 0),
        _suspect("r2", 1.5),
        _suspect("r4", 0, company="globex", sub="sub_g"),
        _suspect("r5", 0.5, sub="sub_b"),
    ]


def test_no_suspects_no_reads() -> None:
    assert targeted_reads([]) == []


def test_a_row_is_concluded_gone_only_when_the_targeted_read_lacks_it_too() -> None:
    suspects = [_suspect("r1", 0), _suspect("r2", 5), _suspect("r3", 10)]
    assert concluded_gone(suspects, {"r2"}) == ["r1", "r3"]
    assert concluded_gone(suspects, {"r1", "r2", "r3"}) == []
    assert concluded_gone([], set()) == []


def test_the_detail_names_the_dropped_row() -> None:
    dropped = DroppedRow("6560e8f3a1", T0)
    detail = dropped_row_detail("no ledger row; credit of 25.00 USD", dropped)
    assert detail.startswith("no ledger row; credit of 25.00 USD; ")
    assert "row 6560e8f3a1" in detail
    assert "2026-11-20T12:00:00Z" in detail
    assert dropped_row_detail(None, dropped).startswith("Moesif no longer returns row 6560e8f3a1")
