"""Runs against Moesif and Stripe behaviour our own fakes would not show by default."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from reconcile.cli import main
from reconcile.db.engine import make_engine
from reconcile.db.models import Run
from reconcile.demo import seed
from reconcile.domain.times import to_iso
from reconcile.fakes.moesif import Exchange, Verdict
from tests.e2e.conftest import World

POST_PATH = "/v1/~/billing/reports/balance_transactions"


def _on_first_post(world: World, verdict: Verdict) -> None:
    def hook(exchange: Exchange) -> Verdict | None:
        if exchange.method == "POST" and exchange.path == POST_PATH:
            world.moesif.on_request = None
            return verdict
        return None

    world.moesif.on_request = hook


def _acme(world: World) -> str:
    """A Stripe customer mapped to Moesif company ``acme``, subscription ``sub_acme``."""
    return world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )


def _one_missing_topup(world: World, days_ago: float = 1) -> str:
    return world.stripe.add_payment_intent(
        _acme(world), 2500, created=world.now - timedelta(days=days_ago)
    )


def _between(world: World, since_days_ago: float, until_days_ago: float) -> list[str]:
    """The arguments of a run over ``[now - since_days_ago, now - until_days_ago)``."""
    return [
        "--since",
        to_iso(world.now - timedelta(days=since_days_ago)),
        "--until",
        to_iso(world.now - timedelta(days=until_days_ago)),
    ]


def test_a_lost_answer_is_read_back_in_the_same_run_and_never_resent(world: World) -> None:
    seed(world.stripe, world.moesif, world.now)
    _on_first_post(world, "apply_then_drop")

    assert main(["--since", world.since]) == 1

    sent = [body["transaction_id"] for body in world.moesif.posts]
    assert len(sent) == len(set(sent)) == 4
    lost = [row for row in world.report_rows() if "answer was lost" in row["detail"]]
    assert [row["action"] for row in lost] == ["posted"]


def test_an_unanswered_post_is_exit_3_and_the_rerun_posts_it_once(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    payment = _one_missing_topup(world)
    _on_first_post(world, "drop")

    assert main(["--since", world.since]) == 3

    err = capsys.readouterr().err
    assert f"reconcile: error: 1 posting(s) got no answer from Moesif: {payment};" in err

    assert world.moesif.posts == []
    assert [row["action"] for row in world.report_rows()] == ["post_failed"]
    # A rerun within RECONCILE_MOESIF_REPORT_LAG of the send cannot trust the reports' silence.
    assert main(["--since", world.since]) == 3
    assert f"got no answer from Moesif: {payment};" in capsys.readouterr().err
    assert world.moesif.posts == []
    # Once the lag has passed (a lag of 0 stands for it; the run's clock is the real one).
    monkeypatch.setenv("RECONCILE_MOESIF_REPORT_LAG", "0")
    assert main(["--since", world.since]) == 0
    assert [body["transaction_id"] for body in world.moesif.posts] == [payment]


def test_a_rerun_of_an_old_window_on_a_fresh_database_finds_its_earlier_postings(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    _one_missing_topup(world, days_ago=10)
    window = [
        "--since",
        to_iso(world.now - timedelta(days=11)),
        "--until",
        to_iso(world.now - timedelta(days=9)),
    ]
    assert main(window) == 0
    assert len(world.moesif.posts) == 1

    assert main(window) == 0
    monkeypatch.setenv("RECONCILE_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    assert main(window) == 0

    assert len(world.moesif.posts) == 1


def test_our_earlier_posting_is_not_missing_in_stripe_in_a_later_window(world: World) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    _one_missing_topup(world, days_ago=25)
    assert main(["--since", to_iso(world.now - timedelta(days=30))]) == 0

    assert main(["--since", to_iso(world.now - timedelta(days=1))]) == 0

    assert world.report_rows() == []


def test_a_subscription_without_a_currency_still_gets_its_credit(world: World) -> None:
    world.moesif.add_subscription("sub_acme", "acme", currency="")
    payment = _one_missing_topup(world)

    assert main(["--since", world.since]) == 0

    assert [body["transaction_id"] for body in world.moesif.posts] == [payment]


def test_a_ledger_row_that_cannot_be_read_blocks_the_posting_of_its_id(world: World) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    payment = _one_missing_topup(world)
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("1." + "1" * 60),
        world.now - timedelta(hours=20),
        transaction_id=payment,
    )

    assert main(["--since", world.since]) == 1

    assert world.moesif.posts == []
    rows = {row["category"]: row for row in world.report_rows()}
    assert set(rows) == {"missing_in_moesif", "unreadable"}
    assert rows["missing_in_moesif"]["action"] == "flagged"
    assert "could not be read" in rows["missing_in_moesif"]["detail"]
    assert (rows["unreadable"]["action"], rows["unreadable"]["transaction_id"]) == (
        "flagged",
        payment,
    )


def test_a_row_naming_an_older_movement_matches_it_even_on_a_fresh_database(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    payment = _one_missing_topup(world, days_ago=25)
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("25.00"),
        world.now - timedelta(hours=3),
        transaction_id=payment,
        description="a webhook, 25 days late",
    )
    monkeypatch.setenv("RECONCILE_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")

    assert main(["--since", to_iso(world.now - timedelta(days=1))]) == 0

    assert world.report_rows() == []
    fetched = [r.path for r in world.stripe.requests if r.path.startswith("/v1/payment_intents/")]
    assert fetched == [f"/v1/payment_intents/{payment}"]


def test_a_currency_mismatch_fixed_in_moesif_is_posted_on_the_next_run(world: World) -> None:
    world.moesif.add_subscription("sub_acme", "acme", currency="usd")
    customer = _acme(world)
    payment = world.stripe.add_payment_intent(
        customer, 3000, currency="eur", created=world.now - timedelta(days=1)
    )
    assert main(["--since", world.since]) == 1
    assert [row["category"] for row in world.report_rows()] == ["currency_mismatch"]

    world.moesif.add_subscription("sub_acme", "acme", currency="eur")
    assert main(["--since", world.since]) == 0

    assert [body["transaction_id"] for body in world.moesif.posts] == [payment]


def test_a_payment_that_settles_after_the_lookback_is_still_credited(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_LOOKBACK", "1h")
    world.moesif.add_subscription("sub_acme", "acme")
    customer = _acme(world)
    slow = world.stripe.add_payment_intent(
        customer, 9900, status="processing", created=world.now - timedelta(days=5)
    )
    assert main(_between(world, 6, 1)) == 0
    assert world.moesif.posts == []

    world.stripe.set_status(slow, "succeeded")
    assert main([]) == 0

    assert [body["transaction_id"] for body in world.moesif.posts] == [slow]


def test_a_payment_that_never_settles_stops_holding_the_window_open_after_the_horizon(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_LOOKBACK", "1h")
    customer = world.stripe.add_customer(metadata={"moesif_company_id": "acme"})
    world.stripe.add_payment_intent(
        customer, 100, status="processing", created=world.now - timedelta(days=60)
    )
    assert main(_between(world, 61, 1)) == 0

    assert main([]) == 0

    engine = make_engine(world.database_url)
    try:
        with engine.connect() as connection:
            since = connection.scalars(select(Run.since).order_by(Run.started_at)).all()[-1]
    finally:
        engine.dispose()
    assert since == world.now - timedelta(days=1) - timedelta(hours=1) - timedelta(days=30)


def test_a_row_matched_by_amount_stays_with_its_payment_when_a_nearer_twin_appears(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_LOOKBACK", "1h")
    world.moesif.add_subscription("sub_acme", "acme")
    customer = _acme(world)
    day_ago = world.now - timedelta(days=1)
    first = world.stripe.add_payment_intent(customer, 5000, created=day_ago)
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("50.00"),
        day_ago + timedelta(minutes=30),
        description="webhook, random id",
    )
    twin = world.stripe.add_payment_intent(
        customer, 5000, status="processing", created=day_ago + timedelta(minutes=45)
    )
    assert (
        main(
            [
                "--since",
                to_iso(day_ago - timedelta(hours=1)),
                "--until",
                to_iso(day_ago + timedelta(hours=2)),
            ]
        )
        == 0
    )
    assert [row["category"] for row in world.report_rows()] == ["matched_by_amount"]
    assert world.report_rows()[0]["transaction_id"] == first

    world.stripe.set_status(twin, "succeeded")
    assert main([]) == 0

    assert [body["transaction_id"] for body in world.moesif.posts] == [twin]


def test_without_ids_in_reports_our_own_earlier_posting_is_recognised(world: World) -> None:
    world.moesif.include_transaction_id = False
    world.moesif.add_subscription("sub_acme", "acme")
    payment = _one_missing_topup(world, days_ago=5)
    assert main(["--since", to_iso(world.now - timedelta(days=7))]) == 0
    assert (
        f"reconcile: credit {payment} for Stripe {payment}" in world.moesif.posts[0]["description"]
    )

    assert main(["--since", to_iso(world.now - timedelta(days=1))]) == 0

    assert world.report_rows() == []
    assert len(world.moesif.posts) == 1
