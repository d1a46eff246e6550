"""The invariants catch what they exist for: a movement Moesif held applied again, a row marked
gone that Moesif still holds, and a run whose examples never met what the checks need."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, update

from reconcile.db.models import LedgerEntry
from tests.e2e.conftest import MOESIF_TOKEN
from tests.simulation import invariants
from tests.simulation.coverage import BY_TEST, Coverage
from tests.simulation.histories import major, rich_history
from tests.simulation.worlds import converge, open_world, seed


def test_an_extra_post_of_a_movement_moesif_held_breaks_the_invariants(tmp_path: Path) -> None:
    history = rich_history()
    with open_world(f"sqlite:///{tmp_path / 'snapshot.db'}", tmp_path) as world:
        seeded = seed(world, history, shuffle=False)
        converge(seeded)
        invariants.nothing_posted_twice_or_wrongly(seeded)
        invariants.owed_movements_are_in_moesif_once(seeded)
        customer, movement = next(
            (customer, movement)
            for customer, movement in history.owed()
            if movement.ledger == "correct"
        )
        company, subscription = seeded.places[customer.key]
        tid = seeded.tid(movement)
        amount = major(movement.amount, customer.currency)
        body = json.dumps(
            {
                "company_id": company,
                "subscription_id": subscription,
                "transaction_id": tid,
                "type": movement.entry_type,
                "amount": "AMOUNT",
            }
        ).replace('"AMOUNT"', str(amount))
        answer = httpx.post(
            f"{world.moesif.base_url}/~/billing/reports/balance_transactions",
            content=body,
            headers={
                "Authorization": f"Bearer {MOESIF_TOKEN}",
                "Content-Type": "application/json",
            },
        )
        assert answer.status_code == 204
        assert world.moesif.applied_count(tid) == 1

        with pytest.raises(AssertionError, match="already held"):
            invariants.nothing_posted_twice_or_wrongly(seeded)
        with pytest.raises(AssertionError, match="is held at"):
            invariants.owed_movements_are_in_moesif_once(seeded)


def test_a_row_marked_gone_that_moesif_holds_breaks_the_invariants(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'snapshot.db'}"
    with open_world(url, tmp_path) as world:
        seeded = seed(world, rich_history(), shuffle=False)
        converge(seeded)
        assert invariants.nothing_gone_that_moesif_holds(seeded) > 0
        held = world.moesif.rows()[0].id
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                update(LedgerEntry).where(LedgerEntry.moesif_id == held).values(gone_at=world.now)
            )
        engine.dispose()

        with pytest.raises(AssertionError, match="marked gone although Moesif still holds"):
            invariants.nothing_gone_that_moesif_holds(seeded)


def test_a_kind_no_example_met_fails_the_run() -> None:
    name = "tests/simulation/test_invariants_catch.py::a run"
    coverage = Coverage(name)
    BY_TEST.pop(name)  # not a real run: kept out of the terminal summary
    coverage.counts["met"] += 1
    coverage.require("met")
    with pytest.raises(AssertionError, match="never covered \\['never met'\\]"):
        coverage.require("met", "never met")
