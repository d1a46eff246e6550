"""MoesifClient against a hostile fake: spoiled 2xx bodies, ignored windows, echoed tokens."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from reconcile.errors import MoesifReadCut, MoesifRejected, MoesifUnavailable, RunFailed
from reconcile.fakes.moesif import FakeMoesif, Garble
from reconcile.moesif.client import MoesifClient, MoesifOutcomeUnknown
from reconcile.observability import SecretFilter
from reconcile.redaction import Redactor
from reconcile.retry import Deadline, DeadlineExceeded
from tests.moesif.conftest import POLICY, TOKEN

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POST_PATH = "/v1/~/billing/reports/balance_transactions"
MakeClient = Callable[..., MoesifClient]


def _post(client: MoesifClient, transaction_id: str = "pi_1") -> None:
    client.post_balance_transaction(
        company_id="co_1",
        subscription_id="sub_1",
        transaction_id=transaction_id,
        entry_type="credit",
        amount=Decimal("10.50"),
        description="Stripe top-up",
    )


def _posts_sent(fake: FakeMoesif) -> int:
    return sum(1 for exchange in fake.exchanges if exchange.path == POST_PATH)


@pytest.mark.parametrize("kind", ["html", "truncated", "non_utf8"])
def test_a_2xx_post_answer_that_is_not_json_leaves_the_outcome_unknown(
    fake: FakeMoesif, client: MoesifClient, slept: list[float], kind: Garble
) -> None:
    fake.garble_next(kind)
    with pytest.raises(MoesifOutcomeUnknown, match="not JSON") as caught:
        _post(client)
    assert "\n" not in str(caught.value)
    assert _posts_sent(fake) == 1
    assert slept == []
    assert [row.transaction_id for row in fake.rows()] == ["pi_1"]


def test_an_empty_2xx_post_answer_confirms(fake: FakeMoesif, client: MoesifClient) -> None:
    _post(client)
    assert _posts_sent(fake) == 1


@pytest.mark.parametrize("kind", ["html", "truncated", "non_utf8"])
def test_a_spoiled_read_is_retried(
    fake: FakeMoesif, client: MoesifClient, slept: list[float], kind: Garble
) -> None:
    fake.add_row("co_1", "sub_1", "credit", Decimal("5"), T0 + timedelta(hours=1))
    fake.garble_next(kind)
    rows = list(client.billing_reports(T0, T0 + timedelta(days=1)))
    assert len(rows) == 1
    assert len(slept) == 1


def test_an_array_where_a_subscription_belongs_is_unavailable(
    fake: FakeMoesif, client: MoesifClient
) -> None:
    fake.add_subscription("sub_1", "co_1")
    fake.garble_next("array")
    with pytest.raises(MoesifUnavailable, match="not an object"):
        client.subscription("sub_1")


def test_a_500_on_a_read_is_retried(
    fake: FakeMoesif, client: MoesifClient, slept: list[float]
) -> None:
    fake.add_row("co_1", "sub_1", "credit", Decimal("5"), T0 + timedelta(hours=1))
    fake.fail_next(500)
    assert len(list(client.billing_reports(T0, T0 + timedelta(days=1)))) == 1
    assert len(slept) == 1


def test_a_500_on_a_post_is_still_not_resent(fake: FakeMoesif, client: MoesifClient) -> None:
    fake.fail_next(500)
    with pytest.raises(MoesifOutcomeUnknown):
        _post(client)
    assert _posts_sent(fake) == 1


def test_rows_outside_the_window_asked_for_are_dropped(
    fake: FakeMoesif, client: MoesifClient
) -> None:
    fake.ignore_window = True
    fake.add_row("co_1", "sub_1", "credit", Decimal("1"), T0 - timedelta(days=3))
    fake.add_row("co_1", "sub_1", "credit", Decimal("2"), T0 + timedelta(hours=2))
    fake.add_row("co_1", "sub_1", "credit", Decimal("3"), T0 + timedelta(days=2))
    rows = list(client.billing_reports(T0, T0 + timedelta(days=1)))
    assert [row["amount"] for row in rows] == [Decimal("2")]


def test_a_server_ignoring_the_window_does_not_make_halving_endless(
    fake: FakeMoesif, make_client: MakeClient
) -> None:
    fake.ignore_window = True
    for hour in range(12):
        fake.add_row("co_1", "sub_1", "credit", Decimal("1"), T0 + timedelta(hours=hour))
    for day in range(1, 30):
        fake.add_row("co_1", "sub_1", "credit", Decimal("1"), T0 - timedelta(days=day))
    client = make_client(read_cap=10)
    # Every answer holds all 41 rows, whatever the window: it is cut off down to one second.
    with pytest.raises(MoesifReadCut):
        list(client.billing_reports(T0, T0 + timedelta(days=1)))
    assert len(fake.exchanges) <= 20
    rows = list(make_client(read_cap=42).billing_reports(T0, T0 + timedelta(days=1)))
    assert len(rows) == 12


def test_halving_is_bounded_even_when_every_row_is_in_the_window(
    fake: FakeMoesif, make_client: MakeClient
) -> None:
    moment = T0 + timedelta(hours=5)
    for _ in range(5):
        fake.add_row("co_1", "sub_1", "credit", Decimal("1"), moment)
    client = make_client(read_cap=2)
    with pytest.raises(MoesifReadCut):
        list(client.billing_reports(T0, T0 + timedelta(days=1)))
    assert len(fake.exchanges) <= 2 * 17 + 1


def test_an_echoed_token_never_reaches_messages_or_logs(
    fake: FakeMoesif, client: MoesifClient
) -> None:
    fake.echo_token = True
    fake.fail_next(503)
    fake.fail_next(422)
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.addFilter(SecretFilter(Redactor([TOKEN])))
    loggers = [logging.getLogger(name) for name in ("", "httpx", "httpcore")]
    levels = [each.level for each in loggers]
    loggers[0].addHandler(handler)
    for each in loggers:
        each.setLevel(logging.DEBUG)
    try:
        with pytest.raises(MoesifRejected) as caught:
            _post(client)
    finally:
        loggers[0].removeHandler(handler)
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)
    assert fake.exchanges[0].status == 503
    assert TOKEN not in str(caught.value)
    assert "***" in str(caught.value)
    assert TOKEN in fake.exchanges[0].headers["authorization"]
    assert "retrying" in written.getvalue()
    assert "X-Request-Id" in written.getvalue()
    assert TOKEN not in written.getvalue()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_deadline_stops_retrying_before_a_wait_past_it(
    fake: FakeMoesif, make_client: MakeClient
) -> None:
    clock = _Clock()
    client = make_client(deadline=Deadline.after(1.2, clock), sleep=clock.sleep)
    fake.fail_next(503, count=POLICY.max_attempts)
    with pytest.raises(DeadlineExceeded, match="RECONCILE_RUN_TIMEOUT") as caught:
        list(client.billing_reports(T0, T0 + timedelta(days=1)))
    assert isinstance(caught.value, RunFailed)
    assert "\n" not in str(caught.value)
    assert len(fake.exchanges) < POLICY.max_attempts
    assert clock.now < 101.2


def test_a_passed_deadline_sends_nothing(fake: FakeMoesif, make_client: MakeClient) -> None:
    clock = _Clock()
    client = make_client(deadline=Deadline.after(5, clock), sleep=clock.sleep)
    clock.now += 5
    with pytest.raises(DeadlineExceeded):
        _post(client)
    assert fake.exchanges == []
