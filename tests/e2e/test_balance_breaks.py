"""A break in Moesif's running balance, through the CLI on both databases (contract section 11)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from reconcile.cli import main
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
