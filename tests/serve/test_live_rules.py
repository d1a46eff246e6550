"""The live path asks the nightly run's posting rule: refusals over real HTTP, on both databases.

Each row of :data:`WEBHOOK_REFUSALS` is a payment the webhook must answer 200, never credit, and
turn into an open finding at once, in the category the nightly run gives it; each row of
:data:`TOPUP_REFUSALS` a top-up ``/top-up`` must refuse with 409 before any charge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconcile.cli import main
from reconcile.db.ledger import store_ledger_rows
from reconcile.domain.ids import finding_id
from reconcile.domain.times import to_iso
from reconcile.domain.values import LedgerRow
from reconcile.domain.vocab import EntryType
from reconcile.fakes.stripe import FakeStripe
from reconcile.serve import inbox
from tests.serve.conftest import MOESIF_TOKEN, STRIPE_KEY, TOKEN, Served


def _seed_row_elsewhere(served: Served, transaction_id: str) -> None:
    """The snapshot already holds a row carrying the payment, on another company's subscription."""
    now = served.clock()
    with served.sessions.begin() as session:
        store_ledger_rows(session, [_row_on_co_2(transaction_id, now)], now)


def _row_on_co_2(transaction_id: str, now: Any) -> LedgerRow:  # noqa: ANN401 - a datetime
    return LedgerRow(
        moesif_id="m_elsewhere",
        transaction_id=transaction_id,
        entry_type=EntryType.CREDIT,
        amount_minor=1050,
        amount_raw="10.50",
        currency="usd",
        company_id="co_2",
        subscription_id="sub_co2",
        created_at=now - timedelta(minutes=5),
        description=None,
    )


@dataclass(frozen=True)
class Refusal:
    """A payment the live path must refuse, and what the refusal must say."""

    name: str
    currency: str
    amount: int
    customer: dict[str, str]
    category: str
    says: str
    payment: dict[str, str] | None = None
    row_elsewhere: bool = False


MAPPED = {"moesif_company_id": "co_1", "moesif_subscription_id": "sub_m1"}

WEBHOOK_REFUSALS = [
    Refusal("jpy_on_usd", "jpy", 5000, MAPPED, "currency_mismatch", "payment in JPY"),
    Refusal("eur_on_usd", "eur", 3000, MAPPED, "currency_mismatch", "payment in EUR"),
    Refusal(
        "subscription_moesif_lacks",
        "usd",
        1050,
        {"moesif_company_id": "co_1", "moesif_subscription_id": "sub_gone"},
        "unmapped_customer",
        "subscription sub_gone not found in Moesif",
    ),
    Refusal(
        "metadata_names_another_companys_subscription",
        "usd",
        1050,
        MAPPED,
        "unmapped_customer",
        "belongs to company co_2, not to company co_1",
        payment={"moesif_subscription_id": "sub_co2"},
    ),
    Refusal(
        "row_already_on_another_subscription",
        "usd",
        1050,
        MAPPED,
        "misapplied",
        "ledger row m_elsewhere carries",
        row_elsewhere=True,
    ),
]

TOPUP_REFUSALS = [
    Refusal("eur_on_usd", "eur", 3000, MAPPED, "currency_mismatch", "payment in EUR"),
    Refusal("jpy_on_usd", "jpy", 5000, MAPPED, "currency_mismatch", "payment in JPY"),
    Refusal(
        "subscription_moesif_lacks",
        "usd",
        1050,
        {"moesif_company_id": "co_1", "moesif_subscription_id": "sub_gone"},
        "unmapped_customer",
        "subscription sub_gone not found in Moesif",
    ),
    Refusal(
        "another_companys_subscription",
        "usd",
        1050,
        {"moesif_company_id": "co_1", "moesif_subscription_id": "sub_co2"},
        "unmapped_customer",
        "belongs to company co_2",
    ),
]


@pytest.fixture
def world(
    served: Served, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Served:
    """The served app, with another company's subscription and the CLI's environment."""
    served.moesif.add_subscription("sub_co2", "co_2", currency="usd")
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "STRIPE_API_KEY": STRIPE_KEY,
        "STRIPE_API_BASE": served.stripe.base_url,
        "MOESIF_MANAGEMENT_TOKEN": f"Bearer {MOESIF_TOKEN}",
        "MOESIF_API_BASE": served.moesif.base_url,
        "RECONCILE_DATABASE_URL": database_url,
        "RECONCILE_REPORT_DIR": str(tmp_path / "reports"),
        "STRIPE_MAX_REQUESTS_PER_SECOND": "1000",
        "RECONCILE_RETRY_BASE_DELAY": "0.001",
        "RECONCILE_STRIPE_REPORT_POLL_SECONDS": "0.001",
    }.items():
        monkeypatch.setenv(name, value)
    return served


def _open_findings(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """What ``reconcile findings`` lists."""
    capsys.readouterr()
    assert main(["findings", "--format", "json"]) == 0
    listed: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return listed


def _pay_by_webhook(served: Served, refusal: Refusal) -> tuple[str, str]:
    customer = served.stripe.add_customer(metadata=refusal.customer)
    payment = served.stripe.add_payment_intent(
        customer, refusal.amount, currency=refusal.currency, metadata=refusal.payment
    )
    if refusal.row_elsewhere:
        _seed_row_elsewhere(served, payment)
    event_id = served.stripe.emit_event("payment_intent.succeeded", "payment_intent", payment)
    assert served.stripe.deliver() == [200]
    served.worker.drain()
    return payment, event_id


@pytest.mark.parametrize("refusal", WEBHOOK_REFUSALS, ids=lambda refusal: refusal.name)
def test_a_webhook_payment_the_rule_refuses_is_not_credited_and_is_an_open_finding_at_once(
    world: Served, refusal: Refusal, capsys: pytest.CaptureFixture[str]
) -> None:
    payment, event_id = _pay_by_webhook(world, refusal)

    assert world.moesif.posts == []
    row = inbox.status_of(world.sessions, event_id)
    assert row is not None
    assert row.status in ("refused", "unmapped")
    [finding] = _open_findings(capsys)
    assert (finding["category"], finding["transaction_id"], finding["status"]) == (
        refusal.category,
        payment,
        "open",
    )
    assert refusal.says in str(finding["detail"])
    moesif_id = "m_elsewhere" if refusal.row_elsewhere else None
    assert finding["finding_id"] == finding_id(refusal.category, payment, moesif_id)


def test_the_nightly_run_gives_a_refused_webhook_payment_the_same_finding(
    world: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    payment, _event = _pay_by_webhook(world, WEBHOOK_REFUSALS[0])
    [live] = _open_findings(capsys)

    now = world.clock()
    window = [
        "--since",
        to_iso(now - timedelta(days=1)),
        "--until",
        to_iso(now + timedelta(minutes=1)),
    ]
    assert main(window) == 1

    assert world.moesif.posts == []
    [after] = _open_findings(capsys)
    assert (after["finding_id"], after["category"]) == (live["finding_id"], "currency_mismatch")


def test_a_payment_the_rule_allows_is_still_credited(world: Served) -> None:
    customer = world.stripe.add_customer(metadata=MAPPED)
    payment = world.stripe.add_payment_intent(customer, 1050, currency="usd")
    world.stripe.emit_event("payment_intent.succeeded", "payment_intent", payment)
    assert world.stripe.deliver() == [200]
    world.worker.drain()
    assert [post["transaction_id"] for post in world.moesif.posts] == [payment]


def _top_up(served: Served, customer: str, refusal: Refusal) -> httpx.Response:
    amount = f"{refusal.amount}" if refusal.currency == "jpy" else f"{refusal.amount / 100:.2f}"
    with served.http() as http:
        return http.post(
            "/top-up",
            json={"customer_id": customer, "amount": amount, "currency": refusal.currency},
            headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": refusal.name},
        )


def _charges(fake: FakeStripe) -> list[str]:
    return [
        f"{request.method} {request.path}"
        for request in fake.requests
        if request.path.startswith("/v1/payment_intents")
    ]


@pytest.mark.parametrize("refusal", TOPUP_REFUSALS, ids=lambda refusal: refusal.name)
def test_a_top_up_the_rule_refuses_is_409_and_nothing_is_charged(
    world: Served, refusal: Refusal
) -> None:
    customer = world.stripe.add_customer(metadata=refusal.customer)
    world.stripe.set_default_payment_method(customer, "pm_card_visa")

    answer = _top_up(world, customer, refusal)

    assert answer.status_code == 409
    body = answer.json()
    assert set(body) == {"error", "reason"}
    assert body["reason"] == refusal.category
    assert refusal.says in body["error"]
    assert "nothing was charged" in body["error"]
    assert world.stripe.objects("payment_intent") == []
    assert _charges(world.stripe) == []
    world.worker.drain()
    assert world.moesif.posts == []


def test_a_top_up_is_refused_when_moesif_cannot_say_where_it_goes(world: Served) -> None:
    customer = world.stripe.add_customer(metadata=MAPPED)
    world.stripe.set_default_payment_method(customer, "pm_card_visa")
    world.moesif.fail_next(503, count=50)

    answer = _top_up(world, customer, Refusal("moesif_down", "usd", 500, MAPPED, "", ""))

    assert answer.status_code == 502
    assert "nothing was charged" in answer.json()["error"]
    assert world.stripe.objects("payment_intent") == []
