"""The fake Moesif's incomplete reads: rows left out of answers, answers cut off at a cap."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from reconcile.fakes.moesif import FakeMoesif
from tests.moesif.conftest import TOKEN

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = {"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z"}


@pytest.fixture
def fake() -> Iterator[FakeMoesif]:
    """A fake Moesif listing oldest first: these tests name which rows an answer holds and where a
    cap cuts, so they fix the order (the seeded order is tested in ``test_fake``)."""
    with FakeMoesif(token=TOKEN, order_seed=None) as moesif:
        yield moesif


@pytest.fixture
def http(fake: FakeMoesif) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=2.0) as client:
        yield client


def _listed(http: httpx.Client, **query: str) -> list[str]:
    response = http.get("/~/billing/reports", params={**DAY, **query}, headers=AUTH)
    assert response.status_code == 200
    return [str(row.get("transaction_id")) for row in response.json()]


def _seed(fake: FakeMoesif, count: int) -> list[str]:
    fake.add_subscription("sub_1", "co_1")
    for index in range(count):
        created = T0 + timedelta(minutes=index)
        fake.add_row("co_1", "sub_1", "credit", Decimal(1), created, f"pi_{index}")
    return [f"pi_{index}" for index in range(count)]


def test_a_row_omitted_once_is_left_out_of_one_answer_and_stays_held(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    ids = _seed(fake, 3)
    fake.omit("pi_1")
    assert _listed(http) == ["pi_0", "pi_2"]
    assert fake.held("pi_1") == 1
    assert _listed(http) == ids


def test_a_row_omitted_always_is_never_listed_but_stays_held(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    ids = _seed(fake, 3)
    row_id = fake.rows()[2].id
    fake.omit("pi_0", row_id, reads=None)
    for _ in range(3):
        assert _listed(http) == ["pi_1"]
    assert [fake.held(tid) for tid in ids] == [1, 1, 1]


def test_an_omission_is_spent_only_by_answers_that_would_list_the_row(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    _seed(fake, 2)
    fake.omit("pi_1", reads=1)
    assert _listed(http, company_id="nobody") == []
    assert _listed(http) == ["pi_0"]
    assert _listed(http) == ["pi_0", "pi_1"]


def test_a_seeded_share_is_left_out_the_same_way_for_the_same_seed(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    ids = _seed(fake, 40)
    fake.omit_share, fake.omit_seed, fake.omit_reads = 0.25, 7, None
    first = _listed(http)
    assert 0 < len(first) < 40
    assert _listed(http) == first
    with FakeMoesif(
        token=TOKEN, omit_share=0.25, omit_seed=7, omit_reads=None, order_seed=None
    ) as twin:
        _seed(twin, 40)
        with httpx.Client(base_url=twin.base_url, timeout=2.0) as other:
            assert _listed(other) == first
    fake.omit_seed = 8
    fake.omit_reads = 1
    assert _listed(http) != first
    assert _listed(http) == ids  # each chosen row was left out once


def test_a_cap_truncates_each_answer_to_its_first_rows(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    ids = _seed(fake, 10)
    fake.read_cap = 4
    assert _listed(http) == ids[:4]
    later = {"from": "2026-03-01T12:05:00Z", "to": "2026-03-02T00:00:00Z"}
    assert _listed(http, **later) == ids[5:9]


def test_the_same_mode_answers_every_window_with_the_same_rows(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    ids = _seed(fake, 10)
    fake.read_cap, fake.cap_mode = 3, "same"
    assert _listed(http) == ids[:3]
    assert (
        _listed(http, **{"from": "2026-03-01T12:07:00Z", "to": "2026-03-01T12:07:01Z"}) == (ids[:3])
    )


def test_raw_rows_count_toward_the_cap(fake: FakeMoesif, http: httpx.Client) -> None:
    _seed(fake, 2)
    fake.add_raw_row('"odd"')
    fake.add_raw_row('"odder"')
    fake.read_cap = 3
    response = http.get("/~/billing/reports", params=DAY, headers=AUTH)
    assert len(response.json()) == 3


def test_deleted_rows_are_gone_from_the_ledger(fake: FakeMoesif, http: httpx.Client) -> None:
    _seed(fake, 2)
    assert fake.delete_rows("pi_0") == 1
    assert fake.held("pi_0") == 0
    assert _listed(http) == ["pi_1"]


def test_left_out_counts_the_answers_that_left_each_row_out(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    _seed(fake, 3)
    row_id = fake.rows()[1].id
    fake.omit("pi_1", reads=2)
    assert fake.left_out() == {}
    assert sorted(_listed(http)) == ["pi_0", "pi_2"]
    assert fake.left_out() == {row_id: 1}
    assert sorted(_listed(http)) == ["pi_0", "pi_2"]
    assert sorted(_listed(http)) == ["pi_0", "pi_1", "pi_2"]
    assert fake.left_out() == {row_id: 2}
