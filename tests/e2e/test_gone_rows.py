"""Ledger rows Moesif no longer returns: kept, marked gone, matching nothing, out of balances."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconcile.balances import moesif_nets
from reconcile.cli import main
from reconcile.db.engine import make_engine
from reconcile.db.models import LedgerEntry
from tests.e2e.conftest import World


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
