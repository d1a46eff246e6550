"""MoesifClient over real HTTP to the fake: posting, reading, retries, limits and secrecy."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from openapi_schema_validator import OAS30Validator

from reconcile.config import Secret, Settings
from reconcile.errors import (
    CredentialsRejected,
    MoesifOutcomeUnknown,
    MoesifReadCut,
    MoesifRejected,
    MoesifUnavailable,
)
from reconcile.fakes.moesif import FakeMoesif
from reconcile.moesif.client import MoesifClient, open_http_client
from reconcile.retry import RateLimiter, RetryPolicy
from tests.conftest import REFERENCE_DATA
from tests.moesif.conftest import POLICY, TOKEN

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POST_PATH = "/v1/~/billing/reports/balance_transactions"
MakeClient = Callable[..., MoesifClient]


def _post(client: MoesifClient, transaction_id: str = "pi_1", amount: str = "10.50") -> None:
    client.post_balance_transaction(
        company_id="co_1",
        subscription_id="sub_1",
        transaction_id=transaction_id,
        entry_type="credit",
        amount=Decimal(amount),
        description="Stripe top-up pi_1",
    )


def _posts_sent(fake: FakeMoesif) -> int:
    return sum(1 for exchange in fake.exchanges if exchange.path == POST_PATH)


def test_post_arrives_with_the_exact_amount(fake: FakeMoesif, client: MoesifClient) -> None:
    fake.add_subscription("sub_1", "co_1")
    _post(client)
    [exchange] = fake.exchanges
    assert exchange.headers["content-type"] == "application/json"
    assert exchange.headers["authorization"] == f"Bearer {TOKEN}"
    assert '"amount": 10.50' in exchange.body
    assert fake.posts[0]["amount"] == Decimal("10.50")
    assert json.loads(exchange.body) == {
        "company_id": "co_1",
        "subscription_id": "sub_1",
        "transaction_id": "pi_1",
        "type": "credit",
        "amount": 10.5,
        "description": "Stripe top-up pi_1",
    }
    [row] = fake.rows()
    assert (row.type, str(row.amount), row.transaction_id) == ("credit", "10.50", "pi_1")


@pytest.mark.parametrize("amount", ["10.50", "1000", "0.001", "123456789012.34"])
def test_posted_bodies_validate_against_moesifs_schema(
    fake: FakeMoesif, client: MoesifClient, amount: str
) -> None:
    document = json.loads((REFERENCE_DATA / "moesif" / "management-api.json").read_text())
    schema = {
        **document["components"]["schemas"]["BillingReportBalanceTransCreate"],
        "components": document["components"],
    }
    _post(client, amount=amount)
    body = fake.exchanges[-1].body
    OAS30Validator(schema).validate(json.loads(body))
    assert json.loads(body, parse_float=Decimal)["amount"] == Decimal(amount)


def test_a_non_positive_amount_is_refused_before_sending(
    fake: FakeMoesif, client: MoesifClient
) -> None:
    with pytest.raises(ValueError, match="positive"):
        _post(client, amount="-1")
    assert fake.exchanges == []


@pytest.mark.parametrize("configured", [TOKEN, f"Bearer {TOKEN}", f"bearer   {TOKEN}"])
def test_token_from_settings_with_or_without_bearer(fake: FakeMoesif, configured: str) -> None:
    settings = Settings.from_env(
        {
            "STRIPE_API_KEY": "sk_test_x",
            "MOESIF_MANAGEMENT_TOKEN": configured,
            "MOESIF_API_BASE": fake.base_url,
        },
        dotenv=None,
    )
    with open_http_client(settings, timeout=2.0) as http:
        list(MoesifClient(http, settings.moesif_token).billing_reports(T0, T0 + timedelta(1)))
        list(MoesifClient(http, Secret(f"Bearer {TOKEN}")).billing_reports(T0, T0 + timedelta(1)))
    sent = [exchange.headers["authorization"] for exchange in fake.exchanges]
    assert sent == [f"Bearer {TOKEN}", f"Bearer {TOKEN}"]
    assert all(exchange.status == 200 for exchange in fake.exchanges)


def _seed(fake: FakeMoesif) -> None:
    fake.add_subscription("sub_1", "co_1")
    fake.add_row("co_1", "sub_1", "credit", Decimal("20.00"), T0 + timedelta(hours=1), "pi_1")
    fake.add_row("co_1", "sub_1", "debit", Decimal("5.25"), T0 + timedelta(hours=2), "re_1")
    fake.add_row("co_2", "sub_2", "credit", Decimal("1.00"), T0 + timedelta(hours=3), "pi_2")


@pytest.mark.parametrize("form", ["typed", "signed"])
@pytest.mark.parametrize("with_ids", [True, False])
def test_reading_reports_in_both_forms(
    fake: FakeMoesif, client: MoesifClient, form: str, with_ids: bool
) -> None:
    _seed(fake)
    fake.row_form = "signed" if form == "signed" else "typed"
    fake.include_transaction_id = with_ids
    read = client.billing_reports(T0, T0 + timedelta(days=1), company_id="co_1")
    rows = sorted(read, key=lambda row: str(row["created_at"]))  # the fake lists in no order
    amounts = [row["amount"] for row in rows]
    if form == "typed":
        assert [row["type"] for row in rows] == ["credit", "debit"]
        assert amounts == [Decimal("20.00"), Decimal("5.25")]
    else:
        assert [row["type"] for row in rows] == ["balance_transaction"] * 2
        assert amounts == [Decimal("20.00"), Decimal("-5.25")]
    assert [row.get("transaction_id") for row in rows] == (
        ["pi_1", "re_1"] if with_ids else [None, None]
    )
    assert fake.exchanges[0].query == {
        "from": "2026-03-01T00:00:00Z",
        "to": "2026-03-02T00:00:00Z",
        "company_id": "co_1",
    }


def test_a_large_answer_is_read_again_in_halves(fake: FakeMoesif, make_client: MakeClient) -> None:
    fake.add_subscription("sub_1", "co_1")
    for index in range(24):
        created = T0 + timedelta(hours=index)
        fake.add_row("co_1", "sub_1", "credit", Decimal(index + 1), created, f"pi_{index}")
    fake.inclusive_to = True
    client = make_client(read_cap=4)
    rows = list(client.billing_reports(T0, T0 + timedelta(days=1)))
    assert sorted(row["transaction_id"] for row in rows) == sorted(f"pi_{i}" for i in range(24))
    assert len(rows) == 24
    assert len(fake.exchanges) > 1
    widths = {
        datetime.fromisoformat(e.query["to"]) - datetime.fromisoformat(e.query["from"])
        for e in fake.exchanges
    }
    assert min(widths) < timedelta(hours=6)


def test_a_one_second_window_still_at_the_cap_fails_the_read(
    fake: FakeMoesif, make_client: MakeClient
) -> None:
    fake.add_subscription("sub_1", "co_1")
    for index in range(5):
        fake.add_row("co_1", "sub_1", "credit", Decimal(1), T0, f"pi_{index}")
    client = make_client(read_cap=2)
    with pytest.raises(MoesifReadCut) as failed:
        list(client.billing_reports(T0, T0 + timedelta(minutes=4)))
    message = str(failed.value)
    assert "\n" not in message
    assert "RECONCILE_MOESIF_READ_CAP=2" in message
    assert "2026-03-01T00:00:00Z" in message
    narrowest = min(
        datetime.fromisoformat(e.query["to"]) - datetime.fromisoformat(e.query["from"])
        for e in fake.exchanges
    )
    assert narrowest <= timedelta(seconds=1)
    assert len(fake.exchanges) <= 10


def test_an_answer_truncated_at_the_cap_is_narrowed_until_every_row_is_read(
    fake: FakeMoesif, make_client: MakeClient
) -> None:
    fake.add_subscription("sub_1", "co_1")
    for index in range(40):
        created = T0 + timedelta(minutes=17 * index)
        fake.add_row("co_1", "sub_1", "credit", Decimal(1), created, f"pi_{index}")
    fake.read_cap = 5
    client = make_client(read_cap=5)
    rows = list(client.billing_reports(T0, T0 + timedelta(days=1)))
    assert sorted(row["transaction_id"] for row in rows) == sorted(f"pi_{i}" for i in range(40))
    assert len(rows) == 40
    assert len(fake.exchanges) > 8  # each answer held at most 5 of the 40 rows


def test_a_moesif_answering_every_window_with_the_same_rows_fails_the_read(
    fake: FakeMoesif, make_client: MakeClient
) -> None:
    fake.add_subscription("sub_1", "co_1")
    for index in range(8):
        created = T0 - timedelta(days=2) + timedelta(hours=index)
        fake.add_row("co_1", "sub_1", "credit", Decimal(1), created, f"pi_{index}")
    fake.read_cap, fake.cap_mode = 3, "same"
    client = make_client(read_cap=3)
    with pytest.raises(MoesifReadCut):
        list(client.billing_reports(T0 - timedelta(days=3), T0 + timedelta(days=1)))
    assert len(fake.exchanges) <= 25


def test_a_read_cap_below_one_row_is_refused(make_client: MakeClient) -> None:
    with pytest.raises(ValueError, match="at least 1 row"):
        make_client(read_cap=0)


def test_an_answer_below_the_cap_is_read_once(fake: FakeMoesif, make_client: MakeClient) -> None:
    fake.add_subscription("sub_1", "co_1")
    for index in range(3):
        fake.add_row("co_1", "sub_1", "credit", Decimal(1), T0, f"pi_{index}")
    rows = list(make_client(read_cap=4).billing_reports(T0, T0 + timedelta(days=1)))
    assert len(rows) == 3
    assert len(fake.exchanges) == 1


def test_subscription_with_balance_is_cached(fake: FakeMoesif, client: MoesifClient) -> None:
    _seed(fake)
    fake.add_subscription("sub_1", "co_1", currency="EUR", pending_activity=Decimal("-1.75"))
    subscription = client.subscription("sub_1")
    assert subscription is not None
    assert (subscription.company_id, subscription.currency, subscription.status) == (
        "co_1",
        "eur",
        "active",
    )
    assert subscription.current_balance == Decimal("14.75")
    assert subscription.pending_activity == Decimal("-1.75")
    assert subscription.available_balance == Decimal("13.00")
    assert client.subscription("sub_1") is subscription
    assert client.subscription("sub_missing") is None
    assert client.subscription("sub_missing") is None
    assert len(fake.exchanges) == 2


def test_429_then_success_honours_retry_after(
    fake: FakeMoesif, client: MoesifClient, slept: list[float]
) -> None:
    fake.fail_next(429, headers={"Retry-After": "7"})
    _post(client)
    assert slept == [7.0]
    assert _posts_sent(fake) == 2
    assert len(fake.rows()) == 1


def test_503_then_success_backs_off_with_jitter(
    fake: FakeMoesif, client: MoesifClient, slept: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next(503)
    with caplog.at_level(logging.INFO, logger="reconcile.moesif.client"):
        list(client.billing_reports(T0, T0 + timedelta(days=1)))
    assert len(slept) == 1
    assert 0.5 <= slept[0] <= 1.0
    assert len(fake.exchanges) == 2
    [record] = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert "HTTP 503" in record.getMessage()
    assert f"{slept[0]:.2f} s" in record.getMessage()
    assert TOKEN not in caplog.text


def test_401_fails_at_once_with_one_line(fake: FakeMoesif, make_client: MakeClient) -> None:
    client = make_client(token="wrong")
    with pytest.raises(CredentialsRejected) as caught:
        _post(client)
    message = str(caught.value)
    assert message.startswith("Moesif refused the management token (HTTP 401)")
    assert "\n" not in message
    assert "[request id req-" in message
    assert len(fake.exchanges) == 1


def test_400_fails_at_once_with_status_excerpt_and_request_id(
    fake: FakeMoesif, client: MoesifClient, slept: list[float]
) -> None:
    fake.fail_next(400, body='{"message":\n  "amount   is bad"}', headers={"X-Request-Id": "r-9"})
    with pytest.raises(MoesifRejected) as caught:
        _post(client)
    assert caught.value.status == 400
    message = str(caught.value)
    assert "HTTP 400" in message
    assert '{"message": "amount is bad"}' in message
    assert "pi_1" in message
    assert "\n" not in message
    assert "[request id " in message
    assert slept == []
    assert len(fake.exchanges) == 1


def test_long_bodies_are_cut_to_200_characters(fake: FakeMoesif, client: MoesifClient) -> None:
    fake.fail_next(422, body="x" * 5000)
    with pytest.raises(MoesifRejected) as caught:
        _post(client)
    assert len(caught.value.body_excerpt.split(" [request id")[0]) <= 200


def test_the_token_never_reaches_exception_text(fake: FakeMoesif, client: MoesifClient) -> None:
    echo = json.dumps({"message": "bad request", "authorization": f"Bearer {TOKEN}"})
    fake.fail_next(400, body=echo)
    with pytest.raises(MoesifRejected) as caught:
        _post(client)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in caught.value.body_excerpt
    assert "Bearer ***" in str(caught.value)
    assert TOKEN not in repr(client)


class _FirstRequestImpatient(httpx.HTTPTransport):
    """Real HTTP; only the first request has a short timeout, so only it can time out."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 1:
            request.extensions["timeout"] = httpx.Timeout(0.05).as_dict()
        return super().handle_request(request)


def test_timeouts_are_retried(fake: FakeMoesif, slept: list[float]) -> None:
    _seed(fake)
    fake.delay_next(2.0)
    transport = _FirstRequestImpatient()
    with httpx.Client(base_url=fake.base_url, timeout=10.0, transport=transport) as http:
        client = MoesifClient(http, Secret(TOKEN), policy=POLICY, sleep=slept.append)
        rows = list(client.billing_reports(T0, T0 + timedelta(days=1)))
    assert len(rows) == 3
    assert len(slept) == 1
    assert len(fake.exchanges) == 2
    assert transport.calls == 2


def test_a_post_applied_then_timed_out_is_unknown_and_never_sent_again(
    fake: FakeMoesif, client: MoesifClient, slept: list[float]
) -> None:
    fake.apply_then_timeout_next(count=3)
    with pytest.raises(MoesifOutcomeUnknown) as caught:
        _post(client)
    assert not isinstance(caught.value, MoesifUnavailable)
    assert "may or may not have applied" in str(caught.value)
    assert _posts_sent(fake) == 1
    assert slept == []
    assert [row.transaction_id for row in fake.rows()] == ["pi_1"]


def test_a_post_whose_answer_is_lost_is_not_resent_even_if_moesif_would_accept_it(
    fake: FakeMoesif, client: MoesifClient
) -> None:
    fake.apply_then_timeout_next()
    with pytest.raises(MoesifOutcomeUnknown):
        _post(client)
    assert _posts_sent(fake) == 1
    assert len(fake.rows()) == 1


def test_read_timeouts_on_a_post_are_unknown_after_one_attempt(
    fake: FakeMoesif, make_client: MakeClient
) -> None:
    fake.delay_next(2.0, count=3)
    with pytest.raises(MoesifOutcomeUnknown):
        _post(make_client(timeout=0.05))
    assert _posts_sent(fake) == 1


def test_503s_before_any_possible_application_are_retried_until_success(
    fake: FakeMoesif, client: MoesifClient
) -> None:
    fake.fail_next(503, count=2)
    _post(client)
    assert len(fake.posts) == 1
    assert _posts_sent(fake) == 3
    assert len(fake.rows()) == 1


@pytest.mark.parametrize(
    ("status", "unknown", "sent"), [(502, False, 3), (503, False, 3), (504, True, 1)]
)
def test_exhausted_5xx_on_post(
    fake: FakeMoesif, client: MoesifClient, status: int, unknown: bool, sent: int
) -> None:
    fake.fail_next(status, count=3)
    with pytest.raises((MoesifUnavailable, MoesifOutcomeUnknown)) as caught:
        _post(client)
    assert isinstance(caught.value, MoesifOutcomeUnknown) is unknown
    assert isinstance(caught.value, MoesifUnavailable) is not unknown
    assert f"HTTP {status}" in str(caught.value)
    assert _posts_sent(fake) == sent


def test_a_500_on_post_is_unknown_without_retry(fake: FakeMoesif, client: MoesifClient) -> None:
    fake.fail_next(500)
    with pytest.raises(MoesifOutcomeUnknown):
        _post(client)
    assert _posts_sent(fake) == 1


def test_exhausted_429_on_read_is_unavailable(fake: FakeMoesif, client: MoesifClient) -> None:
    fake.fail_next(429, count=3)
    with pytest.raises(MoesifUnavailable) as caught:
        client.subscription("sub_1")
    assert not isinstance(caught.value, MoesifOutcomeUnknown)


def test_connect_errors_are_unavailable_not_unknown(
    make_client: MakeClient, slept: list[float]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(MoesifUnavailable) as caught:
        _post(client)
    assert not isinstance(caught.value, MoesifOutcomeUnknown)
    assert "ConnectError" in str(caught.value)
    assert len(slept) == 2


def test_a_malformed_answer_is_unavailable(fake: FakeMoesif, client: MoesifClient) -> None:
    fake.fail_next(200, body="<html>oops</html>", count=POLICY.max_attempts)
    with pytest.raises(MoesifUnavailable, match="not JSON"):
        list(client.billing_reports(T0, T0 + timedelta(days=1)))
    fake.fail_next(200, body='{"not": "a list"}')
    with pytest.raises(MoesifUnavailable, match="not a JSON array"):
        list(client.billing_reports(T0, T0 + timedelta(days=1)))


def test_a_report_element_that_is_not_an_object_is_kept_not_fatal(
    fake: FakeMoesif, client: MoesifClient
) -> None:
    fake.fail_next(200, body='["oops", 7]')
    rows = list(client.billing_reports(T0, T0 + timedelta(days=1)))
    assert [row["not_an_object"] for row in rows] == ["oops", 7]
    assert len({row["_id"] for row in rows}) == 2
    assert all(row["_id"].startswith("not-an-object:") for row in rows)


def test_the_rate_limiter_keeps_the_client_under_moesifs_limit() -> None:
    now = [0.0]
    start = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    with (
        FakeMoesif(
            token=TOKEN, rate_limit=20, clock=lambda: start + timedelta(seconds=now[0])
        ) as fake,
        httpx.Client(base_url=fake.base_url, timeout=2.0) as http,
    ):
        limiter = RateLimiter(20, 60.0, clock=lambda: now[0], sleep=sleep)
        client = MoesifClient(
            http, Secret(TOKEN), policy=RetryPolicy(max_attempts=1), limiter=limiter, sleep=sleep
        )
        for index in range(50):
            client.subscription(f"sub_{index}")
        assert [exchange.status for exchange in fake.exchanges] == [404] * 50
        assert max(fake.requests_per_minute().values()) <= 20
        assert waits
