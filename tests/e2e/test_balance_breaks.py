"""A break in Moesif's running balance, through the CLI on both databases (contract section 11)."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from reconcile.cli import main
from reconcile.db.engine import make_engine
from reconcile.db.models import MoesifSubscription
from reconcile.fakes.moesif import StoredRow
from tests.e2e.conftest import World


def _history(world: World) -> list[StoredRow]:
    """Two top-ups Moesif holds, each followed by usage (which burns the balance down)."""
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    world.moesif.add_subscription("sub_acme", "acme", pending_activity=Decimal("-1.00"))
    rows = []
    for days, cents in ((3, 2500), (1, 1000)):
        paid = world.stripe.add_payment_intent(
            customer, cents, created=world.now - timedelta(days=days)
        )
        rows.append(
            world.moesif.add_row(
                "acme",
                "sub_acme",
                "credit",
                Decimal(cents).scaleb(-2),
                world.now - timedelta(days=days),
                transaction_id=paid,
            )
        )
        usage_at = world.now - timedelta(days=days, hours=-2)
        rows.append(
            world.moesif.add_row(
                "acme", "sub_acme", "usage", Decimal("4.00"), usage_at, billing_meter_id="m1"
            )
        )
    return rows


def test_a_chain_that_adds_up_is_clean(world: World) -> None:
    _history(world)

    assert main(["--since", world.since]) == 0

    assert world.report_rows() == []


def test_a_break_is_flagged_with_both_rows_and_never_posted(world: World) -> None:
    rows = _history(world)
    world.moesif.break_balance(rows[2].id, Decimal("-7.50"))

    assert main(["--since", world.since]) == 1

    [broken] = world.report_rows()
    assert (broken["category"], broken["action"]) == ("balance_break", "flagged")
    assert (broken["company_id"], broken["subscription_id"]) == ("acme", "sub_acme")
    assert broken["currency"] == "usd"
    assert f"row {rows[2].id} begins at 13.50 USD" in broken["detail"]
    assert f"row {rows[1].id} ended at 21.00 USD" in broken["detail"]
    assert "a gap of -7.50 USD" in broken["detail"]
    assert world.moesif.posts == []

    # The same break is the same finding in the next run; once Moesif adds up, it is resolved.
    assert main([]) == 1
    [again] = world.report_rows()
    assert again["finding_id"] == broken["finding_id"]
    assert again["first_seen_at"] == broken["first_seen_at"]
    world.moesif.break_balance(rows[2].id, Decimal(0))
    assert main([]) == 0
    [settled] = world.report_rows()
    assert (settled["finding_id"], settled["action"]) == (broken["finding_id"], "resolved")


def test_a_break_inside_a_row_names_it(world: World) -> None:
    rows = _history(world)
    world.moesif.break_balance(rows[1].id, Decimal("0.01"), within=True)

    assert main(["--since", world.since]) == 1

    [broken] = world.report_rows()
    assert broken["category"] == "balance_break"
    assert f"row {rows[1].id} ends at 21.01 USD" in broken["detail"]
    assert "its beginning plus its 1 balance changes is 21.00 USD" in broken["detail"]


def test_a_reported_balance_off_the_last_row_is_a_break(world: World) -> None:
    rows = _history(world)
    world.moesif.misreport_balance("sub_acme", Decimal("100.00"))

    assert main(["--since", world.since]) == 1

    [broken] = world.report_rows()
    assert broken["category"] == "balance_break"
    assert "Moesif reports 127.00 USD for the subscription" in broken["detail"]
    assert f"its last row {rows[3].id} ended at 27.00 USD" in broken["detail"]


def _balance_reads(world: World) -> int:
    return sum(1 for each in world.moesif.exchanges if "/subscriptions/" in each.path)


def _a_week_passes(world: World) -> None:
    """Age the subscription kept in the snapshot by a week, so the next run reads it again."""
    engine = make_engine(world.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(MoesifSubscription).values(fetched_at=world.now - timedelta(days=8))
            )
    finally:
        engine.dispose()


def test_a_misreported_balance_stays_found_until_moesif_reports_the_last_ending(
    world: World,
) -> None:
    _history(world)
    world.moesif.misreport_balance("sub_acme", Decimal("100.00"))
    assert main(["--since", world.since]) == 1
    [first] = world.report_rows()

    # The next run compares the balance it kept: still a break, never "resolved" for want of it.
    assert main([]) == 1
    [again] = world.report_rows()
    assert (again["finding_id"], again["action"]) == (first["finding_id"], "flagged")

    world.moesif.misreport_balance("sub_acme", Decimal("-100.00"))
    reads = _balance_reads(world)
    assert main([]) == 0  # the kept balance disagrees: read once more, and it now adds up
    assert _balance_reads(world) == reads + 1
    [settled] = world.report_rows()
    assert (settled["finding_id"], settled["action"]) == (first["finding_id"], "resolved")


def test_a_kept_balance_is_compared_in_every_run_and_a_new_one_as_soon_as_it_is_read(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    _history(world)
    assert main(["--since", world.since]) == 0  # reads the subscription: its balance is kept
    world.moesif.misreport_balance("sub_acme", Decimal("100.00"))
    usage_at = world.now - timedelta(hours=1)
    later = world.moesif.add_row(
        "acme", "sub_acme", "usage", Decimal("1.00"), usage_at, billing_meter_id="m1"
    )

    # The next run compares the balance it kept with the ending of the row of its sequence
    # (a usage row came after it): they agree, so Moesif is asked nothing.
    reads = _balance_reads(world)
    with caplog.at_level(logging.INFO, logger="reconcile.steps.balance_chains"):
        assert main([]) == 0
    assert _balance_reads(world) == reads
    assert "their reported balance compared for 1" in caplog.text
    assert world.report_rows() == []

    _a_week_passes(world)  # the run reads the subscription again, and compares what it reads
    assert main([]) == 1
    assert _balance_reads(world) == reads + 1
    [broken] = world.report_rows()
    assert broken["category"] == "balance_break"
    assert "Moesif reports 126.00 USD for the subscription" in broken["detail"]
    assert f"its last row {later.id} ended at 26.00 USD" in broken["detail"]
