"""The exception queue through the CLI: owners, comments, priorities, and corrections posted."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from reconcile.cli import main
from reconcile.db.engine import make_engine
from reconcile.db.finding_states import notes_of
from reconcile.db.models import FindingState, Posting
from tests.e2e.conftest import World


def _cents_row(world: World) -> str:
    """A 25.00 USD payment that Moesif holds as 2500.00: an amount_mismatch of -2475.00."""
    world.moesif.add_subscription("sub_acme", "acme")
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    paid = world.stripe.add_payment_intent(customer, 2500, created=world.now - timedelta(days=2))
    world.moesif.add_row(
        "acme", "sub_acme", "credit", Decimal("2500"), world.now - timedelta(days=2), paid
    )
    return paid


def _queue(capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["findings", "--format", "json", *extra]) == 0
    listed: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return listed


def _state(world: World, finding_id: str) -> FindingState:
    engine = make_engine(world.database_url)
    try:
        with Session(engine) as session:
            state = session.get(FindingState, finding_id)
            assert state is not None
            session.expunge(state)
            return state
    finally:
        engine.dispose()


def _trail(world: World, finding_id: str) -> list[tuple[str, str | None, str, str]]:
    engine = make_engine(world.database_url)
    try:
        with Session(engine) as session:
            return [
                (note.action, note.actor, note.source, note.note)
                for note in notes_of(session, finding_id)
            ]
    finally:
        engine.dispose()


def test_an_amount_mismatch_corrected_settles_at_the_next_run_and_is_posted_once(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    paid = _cents_row(world)
    assert main(["--since", world.since]) == 1
    [mismatch] = [row for row in world.report_rows() if row["category"] == "amount_mismatch"]
    finding = mismatch["finding_id"]
    correction = f"corr_{finding}"

    capsys.readouterr()
    assert main(["findings", "correct", finding, "--note", "cents posted as dollars"]) == 0
    shown = capsys.readouterr().out
    assert (
        f"debit of 2,475.00 USD on company acme, subscription sub_acme, transaction_id {correction}"
    ) in shown
    assert "Nothing was posted" in shown
    assert world.moesif.applied_count(correction) == 0

    assert main(["findings", "correct", finding, "--note", "cents posted as dollars", "--yes"]) == 0
    assert world.moesif.applied_count(correction) == 1
    [applied] = [post for post in world.moesif.applied if post.transaction_id == correction]
    trail = _trail(world, finding)
    assert trail[-1][0] == "corrected"
    assert correction in trail[-1][3]

    assert main(["--since", world.since]) == 0
    rows = world.report_rows()
    assert [(row["category"], row["action"]) for row in rows] == [("amount_mismatch", "resolved")]
    assert not any(row["transaction_id"] == correction for row in rows)
    assert _state(world, finding).status == "closed"
    assert _queue(capsys) == []

    assert main(["findings", "correct", finding, "--note", "again", "--yes"]) == 0
    assert world.moesif.applied_count(correction) == 1
    assert main(["--since", world.since]) == 0
    assert world.report_rows() == []
    assert world.moesif.applied_count(paid) == 0
    assert applied is not None
    engine = make_engine(world.database_url)
    try:
        with Session(engine) as session:
            posting = session.query(Posting).filter_by(transaction_id=correction).one()
            assert (posting.origin, posting.status) == (f"correction:{finding}", "confirmed")
    finally:
        engine.dispose()


def test_a_correction_over_the_guardrail_posts_nothing(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _cents_row(world)
    assert main(["--since", world.since]) == 1
    [mismatch] = [row for row in world.report_rows() if row["category"] == "amount_mismatch"]
    monkeypatch.setenv("RECONCILE_MAX_POSTING_TOTAL", "1000")
    finding = mismatch["finding_id"]
    assert main(["findings", "correct", finding, "--note", "too much", "--yes"]) == 4
    assert world.moesif.applied_count(f"corr_{finding}") == 0
    assert [action for action, *_ in _trail(world, finding)] == []


def test_a_missing_in_stripe_row_is_corrected_only_when_confirmed_an_error(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("20.00"),
        world.now - timedelta(days=1),
        transaction_id="manual-1",
    )
    assert main(["--since", world.since]) == 1
    [row] = world.report_rows()
    finding = row["finding_id"]
    assert main(["findings", "correct", finding, "--note", "x", "--yes"]) == 2
    assert world.moesif.applied == []
    assert (
        main(["findings", "correct", finding, "--note", "no payment", "--yes", "--confirmed-error"])
        == 0
    )
    assert world.moesif.applied_count(f"corr_{finding}") == 1
    assert main(["--since", world.since]) == 0
    assert [(r["category"], r["action"]) for r in world.report_rows()] == [
        ("missing_in_stripe", "resolved")
    ]


def test_the_queue_keeps_owner_comments_and_every_change_with_who_and_why(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _cents_row(world)
    assert main(["--since", world.since]) == 1
    [mismatch] = [row for row in world.report_rows() if row["category"] == "amount_mismatch"]
    finding = mismatch["finding_id"]
    [listed] = _queue(capsys)
    # -2,475.00 USD: high by amount (>= 1,000), due 72 h after it was first seen.
    assert (listed["priority"], listed["owner"], listed["overdue"]) == ("high", None, False)

    assert main(["findings", "assign", finding, "--to", "dana", "--by", "lee"]) == 0
    assert main(["findings", "comment", finding, "--note", "asked Moesif", "--by", "dana"]) == 0
    [listed] = _queue(capsys)
    assert (listed["status"], listed["owner"]) == ("assigned", "dana")
    assert main(["findings", "ignore", finding, "--note", "accepted", "--by", "dana"]) == 0
    assert _queue(capsys) == []
    assert main(["findings", "reopen", finding, "--note", "not accepted", "--by", "lee"]) == 0
    [listed] = _queue(capsys)
    assert listed["status"] == "assigned"

    assert [(action, actor, source) for action, actor, source, _ in _trail(world, finding)] == [
        ("assigned", "lee", "cli"),
        ("commented", "dana", "cli"),
        ("ignored", "dana", "cli"),
        ("reopened", "lee", "cli"),
    ]
    # A run still sees the assigned finding as needing review, and keeps its owner.
    assert main(["--since", world.since]) == 1
    assert _state(world, finding).owner == "dana"
    assert _state(world, finding).status == "assigned"


def _age(world: World, category: str, by: timedelta) -> None:
    """Make a finding first seen ``by`` earlier, as if it had waited that long."""
    engine = make_engine(world.database_url)
    try:
        with Session(engine) as session, session.begin():
            state = session.query(FindingState).filter_by(category=category).one()
            state.first_seen_at = state.first_seen_at - by
    finally:
        engine.dispose()


def test_the_queue_sorts_by_priority_then_due_time_and_marks_overdue(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _cents_row(world)
    world.moesif.add_row(
        "acme", "sub_acme", "credit", Decimal("5.00"), world.now - timedelta(days=1), "manual-2"
    )
    assert main(["--since", world.since]) == 1
    ranked = [(row["category"], row["priority"], row["overdue"]) for row in _queue(capsys)]
    assert ranked == [("amount_mismatch", "high", False), ("missing_in_stripe", "low", False)]

    _age(world, "missing_in_stripe", timedelta(days=10))
    ranked = [(row["category"], row["priority"], row["overdue"]) for row in _queue(capsys)]
    assert ranked == [("missing_in_stripe", "critical", True), ("amount_mismatch", "high", False)]
    capsys.readouterr()
    assert main(["findings"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["finding_id", "priority", "due_at", "owner", "status"]
    assert "OVERDUE" in table[1]
    assert "OVERDUE" not in table[2]

    monkeypatch.setenv("RECONCILE_PRIORITY_CRITICAL_AGE", "30d")
    monkeypatch.setenv("RECONCILE_PRIORITY_HIGH_AMOUNT", "5000")
    ranked = [(row["category"], row["priority"]) for row in _queue(capsys)]
    assert ranked == [("missing_in_stripe", "high"), ("amount_mismatch", "medium")]
    monkeypatch.setenv("RECONCILE_PRIORITY_HIGH_DUE", "0")
    capsys.readouterr()
    assert main(["findings"]) == 2
    assert "RECONCILE_PRIORITY_HIGH_DUE" in capsys.readouterr().err
