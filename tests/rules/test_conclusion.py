"""How a run concludes: exit code, status, and whether the watermark moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconcile.domain.vocab import Action, RunStatus
from reconcile.errors import ExitCode
from reconcile.posting.outcome import Outcome, Result
from reconcile.rules.conclusion import Conclusion, Tally, conclude, tally, to_review, unanswered

STARTED = datetime(2026, 11, 24, 2, tzinfo=UTC)
UNTIL = STARTED - timedelta(hours=1)


def _conclude(**given: Any) -> Conclusion:
    values: dict[str, Any] = {
        "review": 0,
        "tally": Tally(),
        "guardrail": False,
        "partial": False,
        "window_until": UNTIL,
        "started_at": STARTED,
    }
    values.update(given)
    return conclude(**values)


def test_a_clean_full_run_is_ok_and_moves_the_watermark_to_its_until() -> None:
    assert _conclude() == Conclusion(ExitCode.OK, RunStatus.SUCCEEDED, UNTIL)


def test_drift_is_exit_1_and_still_moves_the_watermark() -> None:
    assert _conclude(review=3) == Conclusion(ExitCode.DRIFT, RunStatus.SUCCEEDED, UNTIL)


def test_the_watermark_never_moves_past_the_runs_start() -> None:
    future = STARTED + timedelta(days=1)
    assert _conclude(window_until=future).watermark == STARTED


def test_an_unknown_outcome_is_exit_3() -> None:
    assert (
        _conclude(review=1, tally=Tally(post_failed=1, unanswered=("pi_1",))).exit_code
        == ExitCode.FAILED
    )


def test_a_guardrail_is_exit_4_recorded_as_such_and_keeps_the_watermark() -> None:
    assert _conclude(review=2, tally=Tally(unanswered=("pi_1",)), guardrail=True) == Conclusion(
        ExitCode.GUARDRAIL, RunStatus.GUARDRAIL, None
    )


@pytest.mark.parametrize("given", [{"partial": True}, {"tally": Tally(posted=2, post_failed=1)}])
def test_partial_runs_and_failed_postings_keep_the_watermark(given: dict[str, Any]) -> None:
    assert _conclude(**given).watermark is None


def test_flagged_would_post_and_failed_findings_need_review() -> None:
    actions = [Action.FLAGGED, Action.WOULD_POST, Action.POST_FAILED, Action.POSTED, Action.NONE]
    assert to_review([str(action) for action in actions]) == 3
    assert to_review([]) == 0


def test_outcomes_are_tallied_posted_failed_and_unknown() -> None:
    outcomes = [
        Outcome("pi_1", Result.POSTED, ""),
        Outcome("pi_2", Result.REFUSED, "refused"),
        Outcome("pi_3", Result.UNKNOWN, "no answer"),
        Outcome("pi_4", Result.ALREADY_CONFIRMED, "confirmed earlier"),
    ]
    assert tally(outcomes) == Tally(posted=1, post_failed=2, unanswered=("pi_3",))


def test_postings_without_an_answer_are_named_in_one_error_line() -> None:
    line = unanswered(Tally(post_failed=2, unanswered=("pi_3", "re_4")))
    assert line.startswith("error: 2 posting(s) got no answer from Moesif: pi_3, re_4;")
    assert unanswered(Tally(posted=1)) == ""
