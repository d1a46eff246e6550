"""Findings' lifecycle transitions, decided without a database."""

from __future__ import annotations

import pytest

from reconcile.rules.lifecycle import (
    BY_OPERATOR,
    BY_RUN,
    CLOSED,
    IGNORED,
    OPEN,
    RESOLVED,
    Known,
    Step,
    next_step,
    transitions,
)


@pytest.mark.parametrize(
    ("status", "found", "compared", "step"),
    [
        (None, True, True, Step.NEW),
        (None, False, True, Step.UNCHANGED),
        (OPEN, True, True, Step.SEEN),
        (OPEN, False, True, Step.SETTLED),
        (OPEN, False, False, Step.WAITING),
        (RESOLVED, True, True, Step.REOPENED),
        (RESOLVED, False, True, Step.CONFIRMED),
        (RESOLVED, False, False, Step.AWAITING),
        (CLOSED, True, True, Step.REOPENED),
        (CLOSED, False, True, Step.UNCHANGED),
        (IGNORED, True, True, Step.SILENCED),
        (IGNORED, False, True, Step.UNCHANGED),
    ],
)
def test_the_next_step_of_a_finding_given_its_state_and_what_the_run_saw(
    status: str | None, found: bool, compared: bool, step: Step
) -> None:
    assert next_step(status, found=found, compared=compared) is step


def test_a_new_finding_opens_and_a_known_one_is_seen_again() -> None:
    moved = transitions({"F-a": Known(OPEN)}, ["F-a", "F-b"], ["F-a"])
    assert (moved.new, moved.again, moved.settled) == ({"F-b"}, {"F-a"}, set())


def test_an_open_finding_rechecked_and_not_found_is_settled() -> None:
    moved = transitions({"F-a": Known(OPEN), "F-b": Known(OPEN)}, [], ["F-a"])
    assert moved.settled == {"F-a"}


def test_a_finding_outside_what_the_run_rechecked_stays_open() -> None:
    assert transitions({"F-a": Known(OPEN)}, [], []).settled == set()


def test_an_open_subject_the_run_could_not_see_waits_listed_open() -> None:
    known = {"F-a": Known(OPEN, category="unreadable", subject_present=False)}
    moved = transitions(known, [], ["F-a"])
    assert (moved.settled, moved.waiting) == (set(), {"F-a"})


def test_an_ignored_finding_found_again_stays_ignored_and_silent() -> None:
    moved = transitions({"F-a": Known(IGNORED, BY_OPERATOR)}, ["F-a"], [])
    assert moved.silenced == {"F-a"}
    assert moved.again == moved.reopened == set()


def test_a_resolve_whose_drift_is_still_there_is_reopened() -> None:
    moved = transitions({"F-a": Known(RESOLVED, BY_OPERATOR)}, ["F-a"], ["F-a"])
    assert moved.reopened == moved.again == {"F-a"}
    assert moved.silenced == moved.confirmed == set()


def test_a_resolve_whose_drift_is_gone_is_confirmed_and_not_reported_again() -> None:
    moved = transitions({"F-a": Known(RESOLVED, BY_OPERATOR)}, [], ["F-a"])
    assert moved.confirmed == {"F-a"}
    assert moved.settled == moved.waiting == set()


def test_a_resolve_the_run_could_not_compare_keeps_awaiting_its_check() -> None:
    known = {"F-a": Known(RESOLVED, BY_OPERATOR, subject_present=False)}
    moved = transitions(known, [], ["F-a"])
    assert moved.steps == {"F-a": Step.AWAITING}


def test_drift_back_after_a_run_closed_it_is_reopened() -> None:
    moved = transitions({"F-a": Known(CLOSED, BY_RUN)}, ["F-a"], [])
    assert moved.reopened == {"F-a"}
