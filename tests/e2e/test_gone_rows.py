"""Ledger rows Moesif no longer returns: kept, marked gone, matching nothing, out of balances."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from reconcile.cli import main
from reconcile.db.balances import moesif_nets
from reconcile.db.engine import make_engine
from reconcile.db.models import LedgerEntry, Run
from reconcile.fakes.moesif import Exchange
from tests.e2e.conftest import World
from tests.e2e.test_cli import _one_error_line


def test_a_row_moesif_no_longer_returns_is_marked_gone_and_stops_drifting(world: World) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("20.00"),
        world.now - timedelta(days=1),
        transaction_id="manual-1",
        description="manual credit by support",
    )
    assert main(["--since", world.since]) == 1
    assert [row["category"] for row in world.report_rows()] == ["missing_in_stripe"]

    world.moesif.unlisted.add("manual-1")
    assert main(["--since", world.since]) == 0

    [settled] = world.report_rows()
    assert (settled["category"], settled["action"]) == ("missing_in_stripe", "resolved")
    engine = make_engine(world.database_url)
    try:
        with Session(engine) as session:
            row = session.scalars(select(LedgerEntry)).one()
            assert row.gone_at is not None
            assert row.last_seen_at < row.gone_at
            assert moesif_nets(session) == {}
    finally:
        engine.dispose()

    world.moesif.unlisted.clear()
    assert main(["--since", world.since]) == 1
    engine = make_engine(world.database_url)
    try:
        with Session(engine) as session:
            assert session.scalars(select(LedgerEntry.gone_at)).one() is None
    finally:
        engine.dispose()


# Reads that may be incomplete never prove a row absent (contract section 5).


def _topups(world: World, count: int) -> list[str]:
    """Top-ups of acme that an old webhook credited in Moesif, one row each, an hour apart."""
    world.moesif.add_subscription("sub_acme", "acme")
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    paid = []
    for index in range(count):
        created = world.now - timedelta(days=1, hours=index)
        payment = world.stripe.add_payment_intent(customer, 2500 + index, created=created)
        amount = Decimal(2500 + index) / 100
        world.moesif.add_row(
            "acme", "sub_acme", "credit", amount, created + timedelta(seconds=3), payment
        )
        paid.append(payment)
    return paid


def _missing_topup(world: World) -> str:
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    return world.stripe.add_payment_intent(customer, 900, created=world.now - timedelta(hours=5))


def _ledger(world: World) -> list[LedgerEntry]:
    engine = make_engine(world.database_url)
    try:
        with Session(engine) as session:
            return list(session.scalars(select(LedgerEntry).order_by(LedgerEntry.created_at)))
    finally:
        engine.dispose()


def _run_statuses(world: World) -> list[str]:
    engine = make_engine(world.database_url)
    try:
        with Session(engine) as session:
            return list(session.scalars(select(Run.status).order_by(Run.started_at)))
    finally:
        engine.dispose()


def _targeted_reads(world: World) -> list[Exchange]:
    """The billing-report reads of one company over a window of a few minutes."""
    return [
        exchange
        for exchange in world.moesif.exchanges
        if exchange.method == "GET"
        and exchange.path.endswith("/~/billing/reports")
        and exchange.query.get("company_id") == "acme"
        and datetime.fromisoformat(exchange.query["to"])
        - datetime.fromisoformat(exchange.query["from"])
        <= timedelta(minutes=5)
    ]


def test_a_read_that_omits_a_held_row_once_posts_nothing_again(world: World) -> None:
    [payment] = _topups(world, 1)
    assert main(["--since", world.since]) == 0
    world.moesif.omit(payment)  # the next read leaves it out; Moesif still holds it

    assert main(["--since", world.since]) == 0

    assert world.posted_ids() == []
    assert world.moesif.held(payment) == 1
    assert [row.gone_at for row in _ledger(world)] == [None]
    assert _targeted_reads(world), "the row was not looked for again"
    assert all(row["category"] != "missing_in_moesif" for row in world.report_rows())


def test_a_row_deleted_in_moesif_is_gone_after_a_targeted_read_and_posted_once(
    world: World,
) -> None:
    [payment] = _topups(world, 1)
    assert main(["--since", world.since]) == 0
    [before] = _ledger(world)
    assert world.moesif.delete_rows(payment) == 1

    assert main(["--since", world.since]) == 0

    assert world.posted_ids() == [payment]
    assert world.moesif.held(payment) == 1
    dropped = [row for row in _ledger(world) if row.moesif_id == before.moesif_id]
    assert dropped[0].gone_at is not None
    [finding] = world.report_rows()
    assert (finding["category"], finding["action"]) == ("missing_in_moesif", "posted")
    assert before.moesif_id in finding["detail"]
    exchanges = world.moesif.exchanges
    [post_at] = [i for i, e in enumerate(exchanges) if e.method == "POST"]
    targeted = [exchanges.index(e) for e in _targeted_reads(world)]
    assert any(at < post_at for at in targeted), "posted before a targeted read"
    moment = before.created_at
    assert any(
        datetime.fromisoformat(e.query["from"]) <= moment < datetime.fromisoformat(e.query["to"])
        for e in _targeted_reads(world)
    )

    assert main(["--since", world.since]) == 0
    assert world.posted_ids() == [payment]


def test_an_answer_at_the_read_cap_is_narrowed_until_every_row_is_read(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    paid = _topups(world, 7)
    missing = _missing_topup(world)
    world.moesif.read_cap = 3  # Moesif cuts every answer off at 3 rows, silently
    monkeypatch.setenv("RECONCILE_MOESIF_READ_CAP", "3")

    assert main(["--since", world.since]) == 0

    assert world.posted_ids() == [missing]
    assert [world.moesif.held(payment) for payment in paid] == [1] * 7
    assert sorted(row.transaction_id or "" for row in _ledger(world)) == sorted(paid)
    reads = [e for e in world.moesif.exchanges if e.path.endswith("/~/billing/reports")]
    assert len(reads) > 3


def test_a_one_second_window_still_at_the_cap_fails_the_run_and_concludes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _topups(world, 5)
    assert main(["--since", world.since]) == 0
    _missing_topup(world)
    world.moesif.read_cap, world.moesif.cap_mode = 3, "same"  # the same 3 rows for any window
    monkeypatch.setenv("RECONCILE_MOESIF_READ_CAP", "3")
    capsys.readouterr()

    assert main(["--since", world.since]) == 3

    line = _one_error_line(capsys.readouterr().err)
    assert "RECONCILE_MOESIF_READ_CAP=3" in line
    assert "one-second window" in line
    assert world.posted_ids() == []
    assert [row.gone_at for row in _ledger(world)] == [None] * 5
    assert _run_statuses(world) == ["succeeded", "failed"]


def test_a_row_only_the_read_before_posting_sees_is_not_reported_as_missing(
    world: World,
) -> None:
    [payment] = _topups(world, 1)
    assert main(["--since", world.since]) == 0
    world.moesif.omit(payment, reads=2)  # the window's read and the targeted read leave it out

    assert main(["--since", world.since]) == 0

    assert world.posted_ids() == []
    assert world.moesif.held(payment) == 1
    assert world.moesif.left_out(), "the reads did not leave the row out"
    assert all(row["category"] != "missing_in_moesif" for row in world.report_rows())
