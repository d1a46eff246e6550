"""The exception queue on the review page, against the fakes: bulk forms, trail, correcting."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from reconcile.cli import _page_corrector, main
from reconcile.clients import utc_now
from reconcile.config import Secret
from reconcile.db.engine import make_engine
from reconcile.db.finding_states import notes_of
from reconcile.db.models import FindingState
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.queue import QueueTools
from reconcile.operator.console.settings import ConsoleSettings
from reconcile.rules.correction import MANUAL_STEPS
from tests.e2e.conftest import World
from tests.e2e.test_queue import _cents_row
from tests.operator.conftest import ServedApp, sign_in

TOKEN = "console-token-for-queue-tests-0042"


@pytest.fixture
def page(world: World) -> Iterator[tuple[httpx.Client, sessionmaker[Session]]]:
    """The review page on the world's database, posting corrections to the fake Moesif."""
    engine = make_engine(world.database_url)
    sessions = sessionmaker(engine)
    assert main(["--since", world.since]) == 1  # migrates, and opens the findings
    tools = QueueTools(corrector=_page_corrector(dict(os.environ), sessions, utc_now))
    app = create_console_app(
        ConsoleSettings(Secret(TOKEN), report_dir=world.report_dir), sessions, utc_now, tools=tools
    )
    with ServedApp(app) as served, httpx.Client(base_url=served.url, timeout=30) as client:
        assert sign_in(client, TOKEN).status_code == 303
        yield client, sessions
    engine.dispose()


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found is not None
    return found.group(1)


def _state(sessions: sessionmaker[Session], category: str) -> FindingState:
    with sessions() as session:
        state = session.query(FindingState).filter_by(category=category).one()
        session.expunge(state)
        return state


@pytest.fixture
def two(world: World) -> None:
    _cents_row(world)
    world.moesif.add_row(
        "acme", "sub_acme", "credit", Decimal("5.00"), world.now - timedelta(days=1), "manual-2"
    )


@pytest.mark.usefixtures("two")
def test_the_queue_page_sorts_assigns_and_closes_in_bulk_with_csrf(
    page: tuple[httpx.Client, sessionmaker[Session]],
) -> None:
    client, sessions = page
    mismatch, manual = _state(sessions, "amount_mismatch"), _state(sessions, "missing_in_stripe")
    listing = client.get("/findings").text
    assert listing.index(mismatch.finding_id) < listing.index(manual.finding_id)  # high, low
    assert ">high<" in listing
    assert ">low<" in listing
    ids = [mismatch.finding_id, manual.finding_id]

    refused = client.post(
        "/findings/bulk", data={"finding_id": ids, "action": "assign", "owner": "dana"}
    )
    assert refused.status_code == 403
    assert _state(sessions, "amount_mismatch").owner is None

    csrf = _csrf(listing)
    assigned = client.post(
        "/findings/bulk",
        data={"csrf": csrf, "finding_id": ids, "action": "assign", "owner": "dana"},
    )
    assert assigned.status_code == 303
    assert {_state(sessions, c).owner for c in ("amount_mismatch", "missing_in_stripe")} == {"dana"}
    assert _state(sessions, "amount_mismatch").status == "assigned"
    assert ">dana<" in client.get("/findings").text

    no_note = client.post(
        "/findings/bulk", data={"csrf": csrf, "finding_id": ids, "action": "ignore"}
    )
    assert no_note.status_code == 400
    closed = client.post(
        "/findings/bulk",
        data={"csrf": csrf, "finding_id": [manual.finding_id], "action": "ignore", "note": "ok"},
    )
    assert closed.status_code == 303
    assert _state(sessions, "missing_in_stripe").status == "ignored"
    listed = client.get("/findings").text
    assert manual.finding_id not in listed, listed

    finding = client.get(f"/findings/{manual.finding_id}").text
    steps = MANUAL_STEPS["missing_in_stripe"]
    assert steps[0].upper() + steps[1:] in html.unescape(finding)  # as a sentence
    assert "manual-2" in finding
    comment = client.post(
        f"/findings/{manual.finding_id}/act",
        data={"csrf": csrf, "action": "comment", "note": "support confirmed"},
    )
    assert comment.status_code == 303
    with sessions() as session:
        trail = [
            (n.action, n.actor, n.source, n.note) for n in notes_of(session, manual.finding_id)
        ]
    assert trail == [
        ("assigned", "console", "page", "to dana"),
        ("ignored", "console", "page", "ok"),
        ("commented", "console", "page", "support confirmed"),
    ]
    shown = client.get(f"/findings/{manual.finding_id}").text
    assert "support confirmed" in shown
    assert ">console<" in shown


@pytest.fixture
def cents(world: World) -> None:
    _cents_row(world)


@pytest.mark.usefixtures("cents")
def test_a_correction_from_the_page_is_confirmed_posted_once_and_settled_by_the_next_run(
    world: World, page: tuple[httpx.Client, sessionmaker[Session]]
) -> None:
    client, sessions = page
    mismatch = _state(sessions, "amount_mismatch")
    correction = f"corr_{mismatch.finding_id}"

    shown = client.get(f"/findings/{mismatch.finding_id}/correct").text
    assert (
        f"debit of 2,475.00 USD on company acme, subscription sub_acme, transaction_id {correction}"
    ) in html.unescape(shown)
    assert world.moesif.applied_count(correction) == 0

    refused = client.post(f"/findings/{mismatch.finding_id}/correct", data={"note": "x"})
    assert refused.status_code == 403
    posted = client.post(
        f"/findings/{mismatch.finding_id}/correct",
        data={"csrf": _csrf(shown), "note": "cents posted as dollars"},
    )
    assert posted.status_code == 200
    assert f"{correction}: posted" in posted.text
    assert world.moesif.applied_count(correction) == 1
    again = client.post(
        f"/findings/{mismatch.finding_id}/correct",
        data={"csrf": _csrf(shown), "note": "twice"},
    )
    assert f"{correction}: already_confirmed" in again.text
    assert world.moesif.applied_count(correction) == 1

    assert main(["--since", world.since]) == 0
    assert [(r["category"], r["action"]) for r in world.report_rows()] == [
        ("amount_mismatch", "resolved")
    ]
    assert _state(sessions, "amount_mismatch").status == "closed"
    with sessions() as session:
        actions = [(n.action, n.actor) for n in notes_of(session, mismatch.finding_id)]
    assert actions == [("corrected", "console"), ("corrected", "console"), ("closed", "run")]
