"""Findings' lifecycle transitions, decided without a database."""

from __future__ import annotations

from reconcile.rules.lifecycle import BY_OPERATOR, BY_RUN, Known, transitions


def test_a_new_finding_opens_and_a_known_one_is_seen_again() -> None:
    moved = transitions({"F-a": Known("open")}, ["F-a", "F-b"], ["F-a"])
    assert (moved.new, moved.again, moved.settled) == ({"F-b"}, {"F-a"}, set())


def test_an_open_finding_rechecked_and_not_found_is_settled() -> None:
    moved = transitions({"F-a": Known("open"), "F-b": Known("open")}, [], ["F-a"])
    assert moved.settled == {"F-a"}


def test_a_finding_outside_what_the_run_rechecked_stays_open() -> None:
    assert transitions({"F-a": Known("open")}, [], []).settled == set()


def test_an_unreadable_subject_the_run_could_not_see_stays_open() -> None:
    known = {"F-a": Known("open", category="unreadable", subject_present=False)}
    assert transitions(known, [], ["F-a"]).settled == set()


def test_a_finding_an_operator_closed_stays_closed_and_silent() -> None:
    known = {"F-a": Known("ignored", BY_OPERATOR), "F-b": Known("resolved", BY_RUN)}
    moved = transitions(known, ["F-a", "F-b"], ["F-a", "F-b"])
    assert moved.silenced == {"F-a"}
    assert moved.again == {"F-b"}
    assert moved.settled == set()
