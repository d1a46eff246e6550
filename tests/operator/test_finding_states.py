"""Stable finding ids and the lifecycle queries: list, filter, sort, read, close with a note."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reconcile.db.finding_states import (
    FindingFilter,
    UnknownFinding,
    close_findings,
    get_finding,
    history_of,
    list_findings,
    notes_of,
    open_counts_by_subscription,
)
from reconcile.db.models import FindingNote
from reconcile.db.subscriptions import keep_currency
from reconcile.domain.ids import finding_id
from reconcile.domain.vocab import FindingStatus, NoteSource
from reconcile.operator.findings_view import largest_first
from tests.operator.conftest import NOW, add_finding, add_run, add_state


def test_finding_id_is_stable_and_keyed_on_the_right_record() -> None:
    first = finding_id("missing_in_moesif", "pi_1", None)
    assert first == finding_id("missing_in_moesif", "pi_1", "row-later")
    assert first.startswith("F-")
    assert len(first) == 18
    assert first != finding_id("amount_mismatch", "pi_1", None)
    # Two duplicates of one movement are two findings: the row names them.
    assert finding_id("duplicate_in_moesif", "pi_1", "row-a") != finding_id(
        "duplicate_in_moesif", "pi_1", "row-b"
    )
    assert finding_id("missing_in_stripe", None, "row-a") == finding_id(
        "missing_in_stripe", "random-id", "row-a"
    )
    with pytest.raises(ValueError, match="needs a transaction id"):
        finding_id("unreadable", None, None)


def _seed(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions.begin() as session:
        ids = {
            "big": add_state(session, moesif_id="m1", delta_minor=-90000).finding_id,
            "small": add_state(
                session, moesif_id="m2", delta_minor=-100, company_id="globex"
            ).finding_id,
            "new": add_state(
                session,
                category="missing_in_moesif",
                transaction_id="pi_9",
                moesif_id=None,
                delta_minor=5000,
                first_seen_at=NOW - timedelta(hours=2),
            ).finding_id,
            "closed": add_state(
                session, moesif_id="m4", delta_minor=-7, status="ignored"
            ).finding_id,
        }
    return ids


def _many_currencies(sessions: sessionmaker[Session]) -> dict[str, str]:
    """Four JPY findings larger in raw minor units than any USD one, a blocked-but-owed USD one
    smaller still, one in no known currency and one with no delta."""
    with sessions.begin() as session:
        keep_currency(session, "sub_blocked", "usd", NOW, "blocked", available_balance_minor=0)
        ids = {
            f"jpy{n}": add_state(
                session,
                moesif_id=f"j{n}",
                company_id="umbrella",
                currency="jpy",
                delta_minor=-n * 10000,
            ).finding_id
            for n in (9, 8, 7, 6)
        }
        ids["usd5"] = add_state(session, moesif_id="u5", delta_minor=500).finding_id
        ids["usd4"] = add_state(session, moesif_id="u4", delta_minor=-400).finding_id
        ids["blocked"] = add_state(
            session, moesif_id="b1", subscription_id="sub_blocked", delta_minor=100
        ).finding_id
        ids["no_delta"] = add_state(session, moesif_id="n1", delta_minor=None).finding_id
        ids["no_code"] = add_state(
            session, moesif_id="x1", currency="xx1", delta_minor=999999
        ).finding_id
    return ids


def test_a_limit_by_amount_keeps_each_currencys_largest_not_the_largest_numbers(
    sessions: sessionmaker[Session],
) -> None:
    ids = _many_currencies(sessions)
    with sessions() as session:
        three = largest_first(session, FindingFilter(limit=3), NOW)
        # by raw size the three would all be JPY; by the ranking, the blocked customer owed
        # 1.00 USD first, then the first of each currency
        assert [s.finding_id for s in three] == [ids["blocked"], ids["jpy9"], ids["usd5"]]
        five = [s.finding_id for s in largest_first(session, FindingFilter(limit=5), NOW)]
        assert five == [ids["blocked"], ids["jpy9"], ids["usd5"], ids["jpy8"], ids["usd4"]]
        every = [s.finding_id for s in largest_first(session, FindingFilter(), NOW)]
        limited = [s.finding_id for s in largest_first(session, FindingFilter(limit=9), NOW)]
        assert limited == every
        assert every[-2:] == [ids["no_code"], ids["no_delta"]]  # no code sorts before "usd"
        for limit in range(1, 10):
            chosen = largest_first(session, FindingFilter(limit=limit), NOW)
            assert [s.finding_id for s in chosen] == every[:limit]
        yen = largest_first(session, FindingFilter(limit=1, companies=("umbrella",)), NOW)
        assert [s.finding_id for s in yen] == [ids["jpy9"]]


def test_list_filters_and_sorts_by_amount(sessions: sessionmaker[Session]) -> None:
    ids = _seed(sessions)
    with sessions() as session:
        every_open = [s.finding_id for s in list_findings(session, FindingFilter(), NOW)]
        assert every_open == [ids["big"], ids["new"], ids["small"]]
        acme = list_findings(session, FindingFilter(companies=("acme",)), NOW)
        assert {s.finding_id for s in acme} == {ids["big"], ids["new"]}
        older = list_findings(session, FindingFilter(older_than=timedelta(days=1)), NOW)
        assert {s.finding_id for s in older} == {ids["big"], ids["small"]}
        category = list_findings(session, FindingFilter(categories=("missing_in_moesif",)), NOW)
        assert [s.finding_id for s in category] == [ids["new"]]
        everything = list_findings(session, FindingFilter(include_closed=True), NOW)
        assert ids["closed"] in {s.finding_id for s in everything}
        assert open_counts_by_subscription(session)[("acme", "sub_acme")] == 2


def test_close_records_a_note_and_refuses_unknown_ids(sessions: sessionmaker[Session]) -> None:
    ids = _seed(sessions)
    with sessions.begin() as session, pytest.raises(UnknownFinding, match="F-nope"):
        close_findings(
            session, [ids["big"], "F-nope"], FindingStatus.RESOLVED, "x", NoteSource.CLI, NOW
        )
    with sessions() as session:
        assert get_finding(session, ids["big"]).status == "open"  # nothing closed
        assert session.scalars(select(FindingNote)).all() == []
    with sessions.begin() as session:
        close_findings(
            session, [ids["big"]], FindingStatus.RESOLVED, "credited by hand", NoteSource.PAGE, NOW
        )
    with sessions() as session:
        state = get_finding(session, ids["big"])
        assert (state.status, state.closed_by, state.note) == (
            "resolved",
            "operator",
            "credited by hand",
        )
        [note] = notes_of(session, ids["big"])
        assert (note.action, note.source, note.at) == ("resolved", "page", NOW)
    with sessions.begin() as session, pytest.raises(ValueError, match="needs a note"):
        close_findings(session, [ids["small"]], FindingStatus.IGNORED, "  ", NoteSource.CLI, NOW)


def test_history_follows_the_drift_across_runs(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        add_run(session, "r1", started_at=NOW - timedelta(days=1))
        add_run(session, "r2")
        add_finding(session, "r1", moesif_id="m1", moesif_amount_minor=2000)
        add_finding(session, "r2", moesif_id="m1", moesif_amount_minor=2000)
        add_finding(session, "r2", moesif_id="m-other", moesif_amount_minor=1)
        state = add_state(session, moesif_id="m1")
    with sessions() as session:
        history = history_of(session, get_finding(session, state.finding_id))
        assert [run.id for _, run in history] == ["r1", "r2"]
