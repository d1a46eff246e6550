"""Stripe's own totals and the counterparts inside Stripe, through the command line (section 11)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from reconcile.cli import main
from reconcile.domain.ids import finding_id
from reconcile.rules.control_totals import SUMMARY_REPORT
from tests.e2e.conftest import World

MISMATCH = "stripe_total_mismatch"


def _history(world: World) -> tuple[str, str]:
    """Two top-ups of one customer, one refunded, each already in Moesif; return both ids."""
    world.moesif.add_subscription("sub_acme", "acme")
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    first = world.stripe.add_payment_intent(customer, 5000, created=world.now - timedelta(days=2))
    second = world.stripe.add_payment_intent(customer, 700, created=world.now - timedelta(days=1))
    world.stripe.add_refund(first, 1500, created=world.now - timedelta(hours=20))
    return first, second


def _mismatches(world: World) -> list[dict[str, str]]:
    return [row for row in world.report_rows() if row["category"] == MISMATCH]


def test_a_clean_history_adds_up_to_stripes_summary(world: World) -> None:
    _history(world)

    assert main(["--since", world.since]) == 0  # the Moesif rows were missing: posted

    assert _mismatches(world) == []
    asked = [request for request in world.stripe.requests if "report_runs" in request.path]
    assert [request.method for request in asked][:2] == ["POST", "GET"]
    assert any(request.path.endswith("/contents") for request in world.stripe.requests)


def test_a_summary_short_of_one_movement_names_its_category(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _history(world)
    main(["--since", world.since])
    world.stripe.reports.short_category = "refund"
    capsys.readouterr()

    assert main(["--since", world.since]) == 1  # the flagged mismatch

    rows = _mismatches(world)
    assert len(rows) == 1
    (row,) = rows
    assert row["action"] == "flagged"
    assert row["currency"] == "usd"
    assert row["detail"].startswith("refund in USD: the run paged 1 for -15.00 gross")
    assert "Stripe's summary has 0 for 0.00 gross" in row["detail"]
    assert row["finding_id"] == finding_id(MISMATCH, f"{SUMMARY_REPORT}:refund:usd", None)
    assert len(world.posted_ids()) == 3  # by the first run; nothing for the mismatch
    assert MISMATCH in capsys.readouterr().out

    world.stripe.reports.short_category = None
    assert main(["--since", world.since]) == 0  # the summary adds up again: settled
    (settled,) = _mismatches(world)
    assert (settled["finding_id"], settled["action"]) == (row["finding_id"], "resolved")


def test_a_refused_report_says_so_once_and_the_run_goes_on(
    world: World, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    _history(world)
    world.stripe.reports.refuse = True

    with caplog.at_level(logging.WARNING):
        code = main(["--since", world.since])

    assert code == 0  # as without the check: the top-ups and the refund posted
    assert len(world.posted_ids()) == 3
    assert _mismatches(world) == []
    said = [record for record in caplog.records if "Stripe's totals not checked" in record.message]
    assert len(said) == 1
    assert "HTTP 403" in said[0].message
    out = capsys.readouterr().out
    assert out.count("Stripe's totals not checked") == 1


def test_a_failed_report_run_says_so_and_finds_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _history(world)
    world.stripe.reports.fail = True

    assert main(["--since", world.since]) == 0

    assert _mismatches(world) == []
    assert "failed" in capsys.readouterr().out.split("Stripe's totals not checked")[1]


def test_a_window_past_stripes_data_is_checked_up_to_its_end(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _history(world)
    world.stripe.reports.data_available_end = int((world.now - timedelta(hours=12)).timestamp())
    world.stripe.add_payment_intent(
        world.stripe.objects("customer")[0]["id"], 300, created=world.now - timedelta(hours=1)
    )

    main(["--since", world.since])

    assert _mismatches(world) == []  # the late top-up is outside what Stripe summed
    assert "Stripe's totals checked up to" in capsys.readouterr().out


def test_a_top_up_whose_balance_transaction_is_gone_is_caught(world: World) -> None:
    first, _ = _history(world)
    charge = world.stripe.objects("payment_intent")[0]["latest_charge"]
    assert world.stripe.objects("payment_intent")[0]["id"] == first
    missing = world.stripe.objects("charge")[0]["balance_transaction"]
    assert world.stripe.objects("charge")[0]["id"] == charge
    with world.stripe._state.lock:
        del world.stripe._state.objects["balance_transaction"][missing]
        world.stripe._state._indexes.clear()

    main(["--since", world.since])

    rows = _mismatches(world)
    assert [(row["transaction_id"], row["action"]) for row in rows] == [(first, "flagged")]
    assert f"the top-up {first} names {missing}, which the run did not page" in rows[0]["detail"]
