"""Console login attempts limited per client and overall; tokens of at least 32 characters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.rules.login_limit import (
    MIN_TOKEN_LENGTH,
    Attempts,
    LoginBudget,
    Verdict,
    attempt,
    forget,
    token_problem,
)

T0 = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
BUDGET = LoginBudget(per_client=3, overall=5, window=timedelta(minutes=5))


def run(
    clients: list[str], budget: LoginBudget = BUDGET, step: timedelta = SECOND
) -> list[Verdict]:
    record = Attempts()
    verdicts = []
    for number, client in enumerate(clients):
        verdict = attempt(record, client, T0 + number * step, budget)
        verdicts.append(verdict)
        record = verdict.attempts
    return verdicts


def test_a_client_gets_its_budget_then_a_wait_until_its_oldest_attempt_leaves() -> None:
    verdicts = run(["a", "a", "a", "a"])
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    refused = verdicts[-1]
    assert refused.retry_after == timedelta(minutes=5) - 3 * SECOND
    assert refused.retry_after_seconds == 297
    assert verdicts[0].retry_after_seconds == 0


def test_another_client_is_not_held_back_by_one_over_its_budget() -> None:
    verdicts = run(["a", "a", "a", "a", "b"])
    assert [v.allowed for v in verdicts] == [True, True, True, False, True]


def test_all_clients_together_share_the_overall_budget() -> None:
    verdicts = run(["a", "b", "c", "d", "e", "f"])
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert verdicts[-1].retry_after == timedelta(minutes=5) - 5 * SECOND


def test_the_window_slides() -> None:
    record = run(["a", "a", "a"])[-1].attempts
    assert not attempt(record, "a", T0 + timedelta(minutes=5) - SECOND, BUDGET).allowed
    later = attempt(record, "a", T0 + timedelta(minutes=5), BUDGET)
    assert later.allowed
    assert later.attempts.by_client["a"] == (
        T0 + SECOND,
        T0 + 2 * SECOND,
        T0 + timedelta(minutes=5),
    )


def test_refused_attempts_are_not_recorded_so_the_record_stays_small() -> None:
    verdicts = run([f"client-{n}" for n in range(1000)], step=timedelta(milliseconds=100))
    assert sum(v.allowed for v in verdicts) == BUDGET.overall
    assert len(verdicts[-1].attempts.overall) == BUDGET.overall


def test_a_client_that_signed_in_is_forgotten() -> None:
    record = run(["a", "a", "a", "b"])[-1].attempts
    cleared = forget(record, "a")
    assert "a" not in cleared.by_client
    assert attempt(cleared, "a", T0 + 10 * SECOND, BUDGET).allowed


def test_a_refusal_waits_at_least_a_second() -> None:
    refused = Verdict(False, timedelta(milliseconds=1), Attempts())
    assert refused.retry_after_seconds == 1


def test_naive_times_and_empty_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        attempt(Attempts(), "a", T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="at least one"):
        LoginBudget(per_client=0)
    with pytest.raises(ValueError, match="positive"):
        LoginBudget(window=timedelta(0))


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("   ", "is not set"),
        ("x" * 31, "at least 32 characters"),
        ("  " + "x" * 31 + "  ", "at least 32 characters"),
        ("x" * 31 + "\x00", "control characters"),
        ("x" * 16 + "\n" + "x" * 16, "control characters"),
        ("x" * 32, None),
        ("  " + "k" * 40 + "\n", None),
    ],
)
def test_a_console_token_needs_32_characters(token: str | None, problem: str | None) -> None:
    found = token_problem(token)
    if problem is None:
        assert found is None
    else:
        assert problem in str(found)
    assert MIN_TOKEN_LENGTH == 32


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 120)),
        max_size=80,
    )
)
def test_no_window_ever_holds_more_allowed_attempts_than_the_budgets(
    steps: list[tuple[str, int]],
) -> None:
    budget = LoginBudget(per_client=3, overall=7, window=timedelta(seconds=60))
    record, moment, allowed = Attempts(), T0, []
    for client, gap in steps:
        moment += timedelta(seconds=gap)
        verdict = attempt(record, client, moment, budget)
        record = verdict.attempts
        if verdict.allowed:
            allowed.append((client, moment))
        else:
            assert verdict.retry_after > timedelta(0)
            assert attempt(record, client, moment + verdict.retry_after, budget).allowed
    for _, end in allowed:
        inside = [(c, m) for c, m in allowed if end - budget.window < m <= end]
        assert len(inside) <= budget.overall
        for client in {c for c, _ in inside}:
            assert sum(1 for c, _ in inside if c == client) <= budget.per_client
