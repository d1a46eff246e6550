"""The fake Stripe over real HTTP: Stripe's shapes, list semantics, errors and faults."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from reconcile.fakes.stripe import COLLECTIONS, DEFAULT_ORDER_SEED, TEMPLATES, FakeStripe
from tests.conftest import REFERENCE_DATA
from tests.stripe.conftest import API_KEY, T0

ACACIA = "2025-02-24.acacia"
BASIL = "2025-03-31.basil"


def get(
    fake: FakeStripe,
    path: str,
    params: dict[str, Any] | None = None,
    *,
    key: str = API_KEY,
    version: str | None = ACACIA,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    query = f"?{urlencode(params)}" if params else ""
    request = urllib.request.Request(f"{fake.base_url}{path}{query}")
    request.add_header("Authorization", f"Bearer {key}")
    if version:
        request.add_header("Stripe-Version", version)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def seed_everything(fake: FakeStripe) -> dict[str, str]:
    customer = fake.add_customer(metadata={"moesif_company_id": "acme"})
    subscription = fake.add_subscription(customer)
    payment = fake.add_payment_intent(customer, 5000, invoice="in_1", created=T0)
    refund = fake.add_refund(payment, 1000, created=T0 + timedelta(hours=1))
    failure = fake.fail_refund(refund, created=T0 + timedelta(hours=2))
    dispute = fake.add_dispute(payment, 4000, created=T0 + timedelta(hours=3))
    reversal = fake.reinstate_dispute(dispute, created=T0 + timedelta(hours=4))
    charge = fake.objects("payment_intent")[0]["latest_charge"]
    return {
        "customer": customer,
        "subscription": subscription,
        "payment_intent": payment,
        "charge": charge,
        "refund": refund,
        "refund_failure": failure,
        "dispute": dispute,
        "dispute_reversal": reversal,
    }


def test_templates_are_copied_from_stripes_fixtures() -> None:
    fixtures = json.loads((REFERENCE_DATA / "stripe" / "fixtures3.json").read_text())["resources"]
    for kind, template in TEMPLATES.items():
        assert template.items() <= fixtures[kind].items(), kind


def test_every_key_served_is_a_key_of_stripes_fixture(fake_stripe: FakeStripe) -> None:
    fixtures = json.loads((REFERENCE_DATA / "stripe" / "fixtures3.json").read_text())["resources"]
    seed_everything(fake_stripe)
    served: dict[str, set[str]] = {}
    for collection in COLLECTIONS:
        for version in (ACACIA, BASIL):
            status, body, _ = get(fake_stripe, f"/v1/{collection}", {"limit": 100}, version=version)
            assert status == 200
            assert body["data"], collection
            for item in body["data"]:
                served.setdefault(item["object"], set()).update(item)
    assert set(served) == set(TEMPLATES)
    for kind, keys in served.items():
        extra = keys - set(fixtures[kind])
        # The fixtures are of the newest API version; `invoice` left PaymentIntents in basil.
        assert extra == ({"invoice"} if kind == "payment_intent" else set()), kind


def test_payment_intent_names_its_invoice_only_before_basil(fake_stripe: FakeStripe) -> None:
    payment = fake_stripe.add_payment_intent(
        fake_stripe.add_customer(), 100, invoice="in_9", created=T0
    )
    _, old, _ = get(fake_stripe, f"/v1/payment_intents/{payment}", version=ACACIA)
    _, new, _ = get(fake_stripe, f"/v1/payment_intents/{payment}", version=BASIL)
    assert old["invoice"] == "in_9"
    assert "invoice" not in new
    _, listed, _ = get(
        fake_stripe,
        "/v1/invoice_payments",
        {"payment[type]": "payment_intent", "payment[payment_intent]": payment},
    )
    assert [item["invoice"] for item in listed["data"]] == ["in_9"]
    _, other, _ = get(fake_stripe, "/v1/invoice_payments", {"payment[payment_intent]": "pi_x"})
    assert other["data"] == []


def test_a_bad_key_gets_stripes_401_without_the_key(fake_stripe: FakeStripe) -> None:
    status, body, _ = get(fake_stripe, "/v1/customers/cus_x", key="sk_test_wrongWRONGwrong99")
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("Invalid API Key provided: sk_test_")
    assert "sk_test_wrongWRONGwrong99" not in body["error"]["message"]
    status, _, _ = get(fake_stripe, "/v1/customers", key="")
    assert status == 401


def test_unknown_ids_and_paths_are_404(fake_stripe: FakeStripe) -> None:
    status, body, headers = get(fake_stripe, "/v1/payment_intents/pi_missing")
    assert status == 404
    assert body["error"]["code"] == "resource_missing"
    assert headers["Request-Id"].startswith("req_")
    assert get(fake_stripe, "/v1/payouts")[0] == 404


def test_lists_are_newest_first_and_page_with_cursors(fake_stripe: FakeStripe) -> None:
    customer = fake_stripe.add_customer()
    same_second = [fake_stripe.add_payment_intent(customer, 100, created=T0) for _ in range(3)]
    older = fake_stripe.add_payment_intent(customer, 100, created=T0 - timedelta(days=1))
    newest = fake_stripe.add_payment_intent(customer, 100, created=T0 + timedelta(days=1))
    _, whole, _ = get(fake_stripe, "/v1/payment_intents", {"limit": 100})
    order = [item["id"] for item in whole["data"]]
    assert (order[0], set(order[1:4]), order[4]) == (newest, set(same_second), older)
    _, first, _ = get(fake_stripe, "/v1/payment_intents", {"limit": 2})
    assert [item["id"] for item in first["data"]] == order[:2]
    assert first["has_more"] is True
    assert first["object"] == "list"
    assert first["url"] == "/v1/payment_intents"
    _, second, _ = get(fake_stripe, "/v1/payment_intents", {"limit": 2, "starting_after": order[1]})
    assert [item["id"] for item in second["data"]] == order[2:4]
    _, last, _ = get(fake_stripe, "/v1/payment_intents", {"limit": 2, "starting_after": order[3]})
    assert [item["id"] for item in last["data"]] == order[4:]
    assert last["has_more"] is False
    _, before, _ = get(fake_stripe, "/v1/payment_intents", {"limit": 2, "ending_before": order[4]})
    assert [item["id"] for item in before["data"]] == order[2:4]
    assert before["has_more"] is True
    _, default, _ = get(fake_stripe, "/v1/payment_intents")
    assert len(default["data"]) == 5


def _tie_order(fake: FakeStripe) -> list[str]:
    with fake:
        customer = fake.add_customer()
        for _ in range(12):
            fake.add_payment_intent(customer, 100, created=T0)
        walked: list[str] = []
        while True:
            query: dict[str, object] = {"limit": 5, "created[gte]": int(T0.timestamp())}
            if walked:
                query["starting_after"] = walked[-1]
            _, page, _ = get(fake, "/v1/payment_intents", query)
            walked += [item["id"] for item in page["data"]]
            if not page["has_more"]:
                break
        _, whole, _ = get(fake, "/v1/payment_intents", {"limit": 100})
    assert walked == [item["id"] for item in whole["data"]], "cursors walk the one order"
    assert len(set(walked)) == 12
    return walked


def test_objects_created_in_one_second_list_in_an_order_the_seed_picks() -> None:
    by_id = _tie_order(FakeStripe(api_key=API_KEY, order_seed=None))
    assert by_id == sorted(by_id, reverse=True)
    default = _tie_order(FakeStripe(api_key=API_KEY))
    assert default not in (by_id, by_id[::-1])
    assert _tie_order(FakeStripe(api_key=API_KEY, order_seed=DEFAULT_ORDER_SEED)) == default
    assert _tie_order(FakeStripe(api_key=API_KEY, order_seed=7)) != default


@pytest.mark.parametrize("limit", [0, 101, "ten"])
def test_limit_outside_1_to_100_is_a_400(fake_stripe: FakeStripe, limit: object) -> None:
    status, body, _ = get(fake_stripe, "/v1/refunds", {"limit": limit})
    assert status == 400
    assert body["error"]["param"] == "limit"


def test_created_filters(fake_stripe: FakeStripe) -> None:
    customer = fake_stripe.add_customer()
    ids = [
        fake_stripe.add_payment_intent(customer, 100, created=T0 + timedelta(seconds=s))
        for s in range(4)
    ]
    start = int(T0.timestamp())

    def listed(**created: int) -> list[str]:
        params = {f"created[{name}]": value for name, value in created.items()}
        return sorted(
            item["id"] for item in get(fake_stripe, "/v1/payment_intents", params)[1]["data"]
        )

    assert listed(gte=start + 1, lt=start + 3) == ids[1:3]
    assert listed(gt=start + 1, lte=start + 3) == ids[2:4]
    assert (
        sorted(
            item["id"]
            for item in get(fake_stripe, "/v1/payment_intents", {"created": start})[1]["data"]
        )
        == ids[:1]
    )


def test_subscription_list_filters_customer_and_status(fake_stripe: FakeStripe) -> None:
    one, two = fake_stripe.add_customer(), fake_stripe.add_customer()
    live = fake_stripe.add_subscription(one)
    ended = fake_stripe.add_subscription(one, status="canceled")
    fake_stripe.add_subscription(two)

    def ids(params: dict[str, Any]) -> set[str]:
        return {item["id"] for item in get(fake_stripe, "/v1/subscriptions", params)[1]["data"]}

    assert ids({"customer": one}) == {live}
    assert ids({"customer": one, "status": "all"}) == {live, ended}
    assert ids({"customer": one, "status": "canceled"}) == {ended}


def test_seeded_movements_and_their_balance_transactions(fake_stripe: FakeStripe) -> None:
    seeded = seed_everything(fake_stripe)
    _, refund, _ = get(fake_stripe, f"/v1/refunds/{seeded['refund']}")
    assert (refund["status"], refund["amount"], refund["payment_intent"]) == (
        "failed",
        1000,
        seeded["payment_intent"],
    )
    _, dispute, _ = get(fake_stripe, f"/v1/disputes/{seeded['dispute']}")
    assert (dispute["status"], dispute["amount"], dispute["charge"]) == (
        "won",
        4000,
        seeded["charge"],
    )
    _, charge, _ = get(fake_stripe, f"/v1/charges/{seeded['charge']}")
    assert (charge["amount_refunded"], charge["disputed"]) == (1000, True)
    _, listed, _ = get(
        fake_stripe, "/v1/balance_transactions", {"limit": 100, "expand[0]": "data.source"}
    )
    movements = {(item["reporting_category"], item["amount"]): item for item in listed["data"]}
    assert set(movements) == {
        ("charge", 5000),
        ("refund", -1000),
        ("refund_failure", 1000),
        ("dispute", -4000),
        ("dispute_reversal", 4000),
    }
    assert movements[("dispute", -4000)]["source"]["object"] == "dispute"
    assert movements[("refund_failure", 1000)]["source"]["id"] == seeded["refund"]
    _, plain, _ = get(fake_stripe, "/v1/balance_transactions", {"type": "refund_failure"})
    assert [item["source"] for item in plain["data"]] == [seeded["refund"]]


def test_pending_and_failed_refunds_and_processing_payments(fake_stripe: FakeStripe) -> None:
    customer = fake_stripe.add_customer()
    processing = fake_stripe.add_payment_intent(customer, 700, status="processing")
    _, payment, _ = get(fake_stripe, f"/v1/payment_intents/{processing}")
    assert (payment["status"], payment["amount_received"], payment["latest_charge"]) == (
        "processing",
        0,
        None,
    )
    paid = fake_stripe.add_payment_intent(customer, 700)
    fake_stripe.add_refund(paid, 100, status="pending")
    fake_stripe.add_refund(paid, 100, status="canceled")
    _, refunds, _ = get(fake_stripe, "/v1/balance_transactions", {"type": "refund"})
    assert [item["amount"] for item in refunds["data"]] == [-100]


def test_fail_next_answers_with_the_status_and_headers(fake_stripe: FakeStripe) -> None:
    fake_stripe.fail_next(429, count=2, headers={"Stripe-Should-Retry": "true"})
    fake_stripe.fail_next(500)
    first = get(fake_stripe, "/v1/customers")
    second = get(fake_stripe, "/v1/customers")
    third = get(fake_stripe, "/v1/customers")
    assert [first[0], second[0], third[0]] == [429, 429, 500]
    assert first[1]["error"]["code"] == "rate_limit"
    assert first[2]["Stripe-Should-Retry"] == "true"
    assert third[1]["error"]["type"] == "api_error"
    assert get(fake_stripe, "/v1/customers")[0] == 200


def test_delay_next_holds_the_answer(fake_stripe: FakeStripe) -> None:
    fake_stripe.delay_next(0.05)
    started = time.monotonic()
    get(fake_stripe, "/v1/customers")
    assert time.monotonic() - started >= 0.05
    started = time.monotonic()
    get(fake_stripe, "/v1/customers")
    assert time.monotonic() - started < 0.05


def test_requests_are_recorded_with_their_version(fake_stripe: FakeStripe) -> None:
    get(fake_stripe, "/v1/refunds", {"created[gte]": 5, "limit": 3}, version=BASIL)
    assert [(r.path, r.query, r.stripe_version, r.status) for r in fake_stripe.requests] == [
        ("/v1/refunds", {"created[gte]": "5", "limit": "3"}, BASIL, 200)
    ]


def test_concurrent_requests_and_seeding(fake_stripe: FakeStripe) -> None:
    customer = fake_stripe.add_customer()
    statuses: list[int] = []

    def worker() -> None:
        for _ in range(5):
            fake_stripe.add_payment_intent(customer, 100)
            statuses.append(get(fake_stripe, "/v1/payment_intents", {"limit": 100})[0])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 30
    assert len(get(fake_stripe, "/v1/payment_intents", {"limit": 100})[1]["data"]) == 30
    assert len(fake_stripe.objects("charge")) == 30


def test_the_fake_is_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    with FakeStripe(api_key=API_KEY) as fake:
        get(fake, "/v1/customers")
        get(fake, "/v1/customers", key="sk_test_bad")
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("", "")


def test_base_url_is_loopback_and_stop_closes_it() -> None:
    fake = FakeStripe()
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    with fake:
        url = fake.base_url
        assert url.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/v1/customers", timeout=1)


def test_switches_that_play_servers_unlike_stripe() -> None:
    with FakeStripe(
        api_key=API_KEY,
        clock=lambda: T0,
        serve={"customers", "subscriptions"},
        unknown_url=(405, {"detail": "Method Not Allowed"}),
        ignore_filters={"subscriptions"},
        echo_key=True,
    ) as odd:
        first, second = odd.add_customer(), odd.add_customer()
        odd.add_subscription(first)
        odd.add_subscription(second, status="canceled")
        assert get(odd, "/v1/invoice_payments")[:2] == (405, {"detail": "Method Not Allowed"})
        _, listed, _ = get(odd, "/v1/subscriptions", {"customer": first})
        assert {item["customer"] for item in listed["data"]} == {first, second}
        _, customers, _ = get(odd, "/v1/customers", {"limit": 1})
        assert len(customers["data"]) == 1, "collections not named still filter and page"
        status, missing, _ = get(odd, "/v1/customers/cus_missing")
        assert status == 404
        assert missing["error"]["message"].endswith(f"(key {API_KEY})")


def test_ids_with_reserved_characters_are_found_as_the_sdk_quotes_them(
    fake_stripe: FakeStripe, client: Any
) -> None:
    odd = '=HYPERLINK("x", "y") @+1'
    fake_stripe.add_customer(id=odd, metadata={"moesif_company_id": "acme"})
    assert client.v1.customers.retrieve(odd)["id"] == odd


def test_a_client_that_goes_away_prints_no_traceback(
    fake_stripe: FakeStripe, capfd: pytest.CaptureFixture[str]
) -> None:
    server = fake_stripe._server
    assert server is not None
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        server.handle_error(None, ("127.0.0.1", 1))  # type: ignore[arg-type]
    assert capfd.readouterr().err == ""
