"""The fake Moesif honours the contract and Moesif's OpenAPI document, over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from openapi_schema_validator import OAS30Validator

from reconcile.fakes.moesif import DEFAULT_ORDER_SEED, FakeMoesif
from tests.conftest import REFERENCE_DATA
from tests.moesif.conftest import TOKEN

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POST_PATH = "/~/billing/reports/balance_transactions"


def _schema(name: str) -> dict[str, object]:
    document = json.loads((REFERENCE_DATA / "moesif" / "management-api.json").read_text())
    schema: dict[str, object] = document["components"]["schemas"][name]
    return {**schema, "components": document["components"]}


@pytest.fixture
def http(fake: FakeMoesif) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=2.0) as client:
        yield client


def _post(http: httpx.Client, body: object, headers: dict[str, str] | None = None) -> int:
    text = body if isinstance(body, str) else json.dumps(body)
    response = http.post(
        POST_PATH,
        content=text,
        headers=headers if headers is not None else {**AUTH, "Content-Type": "application/json"},
    )
    return response.status_code


VALID = {
    "company_id": "co_1",
    "subscription_id": "sub_1",
    "transaction_id": "pi_1",
    "type": "credit",
    "amount": 10.5,
    "description": "top-up",
}


def test_base_url_is_loopback_v1(fake: FakeMoesif) -> None:
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert fake.base_url.endswith("/v1")


@pytest.mark.parametrize(
    "authorization",
    [None, TOKEN, f"Bearer Bearer {TOKEN}", f"bearer {TOKEN}", "Bearer wrong"],
)
def test_anything_but_exactly_bearer_token_is_401(
    http: httpx.Client, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = http.get("/search/~/subscriptions/sub_1", headers=headers)
    assert response.status_code == 401
    assert "X-Moesif-Request-Id" in response.headers


def test_post_is_stored_with_exact_amount_and_subscription_currency(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    fake.add_subscription("sub_1", "co_1", currency="EUR")
    body = json.dumps(VALID).replace("10.5", "10.50")
    assert _post(http, body) == 204
    [row] = fake.rows()
    assert (row.transaction_id, row.type, row.currency) == ("pi_1", "credit", "eur")
    assert str(row.amount) == "10.50"
    assert fake.posts[0]["amount"] == Decimal("10.50")


@pytest.mark.parametrize(
    "change",
    [
        {"company_id": None},
        {"subscription_id": ""},
        {"transaction_id": 7},
        {"type": "promotion"},
        {"amount": "10.50"},
        {"amount": True},
        {"amount": -1},
        {"amount": 0},
        {"description": 5},
    ],
)
def test_malformed_post_is_400_with_a_json_error(
    fake: FakeMoesif, http: httpx.Client, change: dict[str, object]
) -> None:
    body = {**VALID, **change}
    body = {key: value for key, value in body.items() if value is not None}
    response = http.post(
        POST_PATH, content=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["message"]
    assert fake.rows() == []


def test_post_needs_a_json_body_and_content_type(fake: FakeMoesif, http: httpx.Client) -> None:
    assert _post(http, "{not json") == 400
    assert _post(http, "[1, 2]") == 400
    assert _post(http, VALID, headers={**AUTH, "Content-Type": "text/plain"}) == 400
    assert fake.rows() == []


def test_a_repeated_transaction_id_is_applied_again(fake: FakeMoesif, http: httpx.Client) -> None:
    fake.add_subscription("sub_1", "co_1")
    assert _post(http, VALID) == 204
    assert _post(http, {**VALID, "amount": 99}) == 204
    assert sorted(row.amount for row in fake.rows()) == [Decimal("10.5"), Decimal(99)]
    assert fake.balance("sub_1") == Decimal("109.5")
    assert fake.applied_count("pi_1") == 2
    assert fake.applied_counts() == {"pi_1": 2}
    assert [(post.transaction_id, post.amount) for post in fake.applied] == [
        ("pi_1", Decimal("10.5")),
        ("pi_1", Decimal(99)),
    ]
    assert len(fake.posts) == 2


def test_the_applied_log_names_each_post(fake: FakeMoesif, http: httpx.Client) -> None:
    assert _post(http, {**VALID, "type": "debit", "amount": 2}) == 204
    [post] = fake.applied
    [row] = fake.rows()
    assert (post.transaction_id, post.company_id, post.subscription_id) == ("pi_1", "co_1", "sub_1")
    assert (post.type, post.amount, post.applied_at) == ("debit", Decimal(2), row.created_at)
    assert fake.applied_count("pi_2") == 0


def test_deduplicate_plays_a_forgiving_moesif() -> None:
    with FakeMoesif(token=TOKEN, deduplicate=True) as forgiving:
        own = httpx.Client(base_url=forgiving.base_url, timeout=2.0)
        with own:
            assert _post(own, VALID) == 204
            assert _post(own, {**VALID, "amount": 99}) == 204
        assert [row.amount for row in forgiving.rows()] == [Decimal("10.5")]
        assert forgiving.applied_count("pi_1") == 1
        assert len(forgiving.posts) == 2


def test_failed_and_refused_posts_are_not_applied(fake: FakeMoesif, http: httpx.Client) -> None:
    fake.fail_next(503)
    assert _post(http, VALID) == 503
    fake.strict_subscriptions = True
    assert _post(http, VALID) == 404
    assert fake.applied == []


def test_unknown_subscription_is_stored_unless_strict(fake: FakeMoesif, http: httpx.Client) -> None:
    assert _post(http, VALID) == 204
    assert fake.rows()[0].currency is None
    fake.strict_subscriptions = True
    assert _post(http, {**VALID, "transaction_id": "pi_2"}) == 404
    assert len(fake.rows()) == 1


def _seed(fake: FakeMoesif) -> None:
    fake.add_subscription("sub_1", "co_1")
    fake.add_subscription("sub_2", "co_2")
    fake.add_row("co_1", "sub_1", "credit", Decimal("20.00"), T0, transaction_id="pi_1")
    fake.add_row("co_1", "sub_1", "debit", Decimal("5.25"), T0 + timedelta(hours=1), "re_1")
    fake.add_row("co_1", "sub_1", "promotion", Decimal("3"), T0 + timedelta(hours=2))
    fake.add_row(
        "co_1", "sub_1", "usage", Decimal("1.10"), T0 + timedelta(hours=3), billing_meter_id="m_1"
    )
    fake.add_row("co_2", "sub_2", "credit", Decimal("7.00"), T0 + timedelta(hours=4), "pi_2")


def _reports(http: httpx.Client, **params: str) -> list[dict[str, object]]:
    response = http.get("/~/billing/reports", params=params, headers=AUTH)
    assert response.status_code == 200
    rows: list[dict[str, object]] = response.json(parse_float=Decimal)
    return rows


def _in_time_order(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Return ``rows`` oldest first: the fake lists them in a seeded order, not by time."""
    return sorted(rows, key=lambda row: str(row["created_at"]))


def test_reports_are_half_open_and_filtered_by_company(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    _seed(fake)
    rows = _in_time_order(
        _reports(http, **{"from": "2026-03-01T12:00:00Z", "to": "2026-03-01T16:00:00Z"})
    )
    assert [row["transaction_id"] for row in rows if "transaction_id" in row] == ["pi_1", "re_1"]
    assert len(rows) == 4
    only = _reports(http, company_id="co_2")
    assert [row["transaction_id"] for row in only] == ["pi_2"]


def test_inclusive_to_returns_the_boundary_row(fake: FakeMoesif, http: httpx.Client) -> None:
    _seed(fake)
    fake.inclusive_to = True
    rows = _in_time_order(
        _reports(http, **{"from": "2026-03-01T12:00:00Z", "to": "2026-03-01T13:00:00Z"})
    )
    assert [row["transaction_id"] for row in rows] == ["pi_1", "re_1"]


def test_typed_and_signed_row_forms(fake: FakeMoesif, http: httpx.Client) -> None:
    _seed(fake)
    typed = _in_time_order(_reports(http, company_id="co_1"))
    assert [(row["type"], row["amount"]) for row in typed] == [
        ("credit", Decimal("20.00")),
        ("debit", Decimal("5.25")),
        ("promotion", Decimal("3")),
        ("usage", Decimal("1.10")),
    ]
    fake.row_form = "signed"
    signed = _in_time_order(_reports(http, company_id="co_1"))
    assert [(row["type"], row["amount"]) for row in signed[:3]] == [
        ("balance_transaction", Decimal("20.00")),
        ("balance_transaction", Decimal("-5.25")),
        ("balance_transaction", Decimal("3")),
    ]
    assert signed[3]["billing_meter_id"] == "m_1"
    assert signed[0]["_id"] == typed[0]["_id"]
    assert signed[0]["created_at"] == "2026-03-01T12:00:00.000Z"


def test_transaction_ids_and_row_ids_can_be_left_out(fake: FakeMoesif, http: httpx.Client) -> None:
    _seed(fake)
    fake.include_transaction_id = False
    fake.include_row_ids = False
    rows = _reports(http)
    assert all("transaction_id" not in row and "_id" not in row for row in rows)
    assert len(rows) == 5


def _read_order(fake: FakeMoesif) -> list[str]:
    with fake:
        fake.add_subscription("sub_1", "co_1")
        for index in range(12):
            created = T0 + timedelta(minutes=index)
            fake.add_row("co_1", "sub_1", "credit", Decimal(1), created, f"pi_{index:02d}")
        with httpx.Client(base_url=fake.base_url, timeout=2.0) as own:
            first = [str(row["transaction_id"]) for row in _reports(own)]
            again = [str(row["transaction_id"]) for row in _reports(own)]
    assert first == again, "one fake lists the same rows in the same order"
    return first


def test_reads_list_rows_in_an_order_the_seed_picks() -> None:
    in_time = [f"pi_{index:02d}" for index in range(12)]
    default = _read_order(FakeMoesif(token=TOKEN))
    assert sorted(default) == in_time
    assert default != in_time
    assert _read_order(FakeMoesif(token=TOKEN, order_seed=DEFAULT_ORDER_SEED)) == default
    assert _read_order(FakeMoesif(token=TOKEN, order_seed=7)) != default
    assert _read_order(FakeMoesif(token=TOKEN, order_seed=None)) == in_time


def test_bad_report_times_are_400(fake: FakeMoesif, http: httpx.Client) -> None:
    response = http.get("/~/billing/reports", params={"from": "yesterday"}, headers=AUTH)
    assert response.status_code == 400


def test_subscription_has_balance_and_matches_the_openapi_schema(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    _seed(fake)
    fake.add_subscription("sub_1", "co_1", pending_activity=Decimal("-2.50"))
    response = http.get("/search/~/subscriptions/sub_1", headers=AUTH)
    assert response.status_code == 200
    document = response.json(parse_float=Decimal)
    assert document["currency"] == "usd"
    # 20.00 - 5.25 + 3 promotion - 1.10 usage: Moesif burns posted usage down from the balance
    assert document["balance"]["current_balance"] == Decimal("16.65")
    assert document["balance"]["pending_activity"] == Decimal("-2.50")
    assert document["balance"]["available_balance"] == Decimal("14.15")
    plain = response.json()
    OAS30Validator(_schema("SubscriptionDTO")).validate(plain)
    OAS30Validator(_schema("CreditBalance")).validate(plain["balance"])
    assert fake.balance("sub_1") == Decimal("16.65")


def test_unknown_subscription_and_route_are_404(http: httpx.Client) -> None:
    assert http.get("/search/~/subscriptions/nope", headers=AUTH).status_code == 404
    assert http.get("/~/nothing", headers=AUTH).status_code == 404
    assert http.get(POST_PATH, headers=AUTH).status_code == 405


def test_rate_limit_per_calendar_minute() -> None:
    now = [datetime(2026, 3, 1, 12, 0, 50, tzinfo=UTC)]
    with (
        FakeMoesif(token=TOKEN, rate_limit=3, clock=lambda: now[0]) as fake,
        httpx.Client(base_url=fake.base_url, timeout=2.0) as http,
    ):
        statuses = [http.get("/~/billing/reports", headers=AUTH).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = fake.exchanges[-1]
        assert limited.status == 429
        response = http.get("/~/billing/reports", headers=AUTH)
        assert response.headers["Retry-After"] == "10"
        now[0] = datetime(2026, 3, 1, 12, 1, 0, tzinfo=UTC)
        assert http.get("/~/billing/reports", headers=AUTH).status_code == 200
        assert list(fake.requests_per_minute().values()) == [3, 1]


def test_fail_next_answers_then_recovers(fake: FakeMoesif, http: httpx.Client) -> None:
    fake.fail_next(429, count=2, headers={"Retry-After": "3"})
    first = http.get("/~/billing/reports", headers=AUTH)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "3")
    assert http.get("/~/billing/reports", headers=AUTH).status_code == 429
    assert http.get("/~/billing/reports", headers=AUTH).status_code == 200


def test_apply_then_timeout_applies_and_drops_the_answer(
    fake: FakeMoesif, http: httpx.Client
) -> None:
    fake.apply_then_timeout_next()
    with pytest.raises(httpx.RemoteProtocolError):
        _post(http, VALID)
    assert [row.transaction_id for row in fake.rows()] == ["pi_1"]
    assert fake.exchanges[-1].status is None


def test_delay_next_makes_a_client_time_out(fake: FakeMoesif) -> None:
    fake.delay_next(1.0)
    with (
        httpx.Client(base_url=fake.base_url, timeout=0.05) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.get("/~/billing/reports", headers=AUTH)


def test_concurrent_posts_are_each_applied(fake: FakeMoesif) -> None:
    def post(index: int) -> None:
        with httpx.Client(base_url=fake.base_url, timeout=2.0) as own:
            for attempt in range(2):
                body = {**VALID, "transaction_id": f"pi_{index}", "description": f"try {attempt}"}
                assert _post(own, body) == 204

    threads = [threading.Thread(target=post, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(row.transaction_id or "" for row in fake.rows()) == sorted(
        [f"pi_{i}" for i in range(8)] * 2
    )
    assert fake.applied_counts() == {f"pi_{i}": 2 for i in range(8)}
    assert len(fake.posts) == 16


def test_fake_is_quiet(
    fake: FakeMoesif, http: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    http.get("/~/billing/reports", headers=AUTH)
    http.get("/nothing")
    fake.apply_then_timeout_next()
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/~/billing/reports", headers=AUTH)
    captured = capfd.readouterr()
    assert captured.err == ""
    assert captured.out == ""
    assert TOKEN not in repr(fake)
