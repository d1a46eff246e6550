"""The exception queue's first N are chosen by the queue's own order, on both databases.

The console lists at most so many findings. They must be the first of the queue (priority, then
due time, section 10a), not the largest numbers: a small finding overdue by age comes before a
fresh large one, whatever the currencies' units.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from reconcile.db.finding_states import FindingFilter
from reconcile.db.models import FindingState
from reconcile.operator.findings_view import most_urgent
from reconcile.rules.priority import DEFAULT_RULES, Level, Priority, PriorityRules, assess
from tests.operator.conftest import NOW, add_state

_CURRENCIES = ("usd", "usd", "eur", "jpy", "kwd", None, "xx")

_QUICK = PriorityRules(
    levels=(
        Level(Priority.CRITICAL, 50, timedelta(days=2), timedelta(hours=1)),
        Level(Priority.HIGH, 5, timedelta(0), timedelta(hours=30)),  # every finding earns high
        Level(Priority.MEDIUM, 0, timedelta(hours=1), timedelta(days=9)),
    ),
    low_due_in=timedelta(hours=2),
)


def _oracle(states: list[FindingState], rules: PriorityRules) -> list[str]:
    """The whole queue sorted in Python by the rule: priority, due, size, first seen, id."""

    def key(state: FindingState) -> tuple[object, ...]:
        assessment = assess(state.delta_minor, state.currency, state.first_seen_at, NOW, rules)
        size = abs(state.delta_minor or 0)
        return (*assessment.queue_key(), -size, state.first_seen_at, state.finding_id)

    return [state.finding_id for state in sorted(states, key=key)]


def _random_findings(session: Session, seed: int) -> list[FindingState]:
    draw = random.Random(seed)
    states = []
    for number in range(70):
        currency = draw.choice(_CURRENCIES)
        delta = draw.choice([None, 0, 1, 99, 500, 10_000, 150_000, 2_000_000, 50_000_000])
        hours = draw.choice([-3, 0, 1, 5, 30, 80, 130, 300, 24 * 40])
        states.append(
            add_state(
                session,
                category=draw.choice(["missing_in_moesif", "missing_in_stripe"]),
                transaction_id=f"pi_{seed}_{number}",
                moesif_id=None,
                currency=currency,
                delta_minor=None if delta is None else delta * draw.choice([1, -1]),
                first_seen_at=NOW - timedelta(hours=hours, minutes=draw.randrange(3) * 20),
            )
        )
    return states


@pytest.mark.parametrize("rules", [DEFAULT_RULES, _QUICK], ids=["default", "custom"])
def test_the_first_n_are_those_of_the_whole_queue_in_its_order(
    sessions: sessionmaker[Session], rules: PriorityRules
) -> None:
    for seed in range(4):
        with sessions() as session:  # flushed, never committed: each seed starts empty
            states = _random_findings(session, seed)
            whole = _oracle(states, rules)
            for limit in (1, 4, 13, 69):
                chosen = most_urgent(session, FindingFilter(limit=limit), NOW, rules)
                assert [state.finding_id for state in chosen] == whole[:limit], (seed, limit)


def test_a_small_finding_overdue_by_age_is_not_cut_for_larger_numbers(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        for amount in (9000, 8000, 7000):  # fresh, low: 90.00 USD and less is under every level
            add_state(
                session,
                category="missing_in_moesif",
                transaction_id=f"pi_yen_{amount}",
                moesif_id=None,
                currency="jpy",
                delta_minor=amount // 100,
                first_seen_at=NOW - timedelta(hours=1),
            )
            add_state(
                session,
                category="missing_in_moesif",
                transaction_id=f"pi_usd_{amount}",
                moesif_id=None,
                currency="usd",
                delta_minor=amount,
                first_seen_at=NOW - timedelta(hours=1),
            )
        old = add_state(
            session,
            category="missing_in_moesif",
            transaction_id="pi_old",
            moesif_id=None,
            currency="usd",
            delta_minor=200,  # 2.00 USD, first seen six days ago: critical by age
            first_seen_at=NOW - timedelta(days=6),
        ).finding_id
        chosen = most_urgent(session, FindingFilter(limit=2), NOW, DEFAULT_RULES)
    assert chosen[0].finding_id == old
