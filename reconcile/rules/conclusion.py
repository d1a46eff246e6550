"""How a run ends: its exit code, its recorded status, and whether the watermark moves."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from reconcile.domain.values import Sent
from reconcile.domain.vocab import REVIEW_ACTIONS, Action, RunStatus
from reconcile.errors import ExitCode


@dataclass(frozen=True)
class Conclusion:
    """The end of a run: exit code, status, and the new watermark (``None``: it stays)."""

    exit_code: ExitCode
    status: RunStatus
    watermark: datetime | None


@dataclass(frozen=True)
class Tally:
    """What became of a run's orders: posted, failed, and of those failed, which got no answer."""

    posted: int = 0
    post_failed: int = 0
    unanswered: tuple[str, ...] = ()

    @property
    def unknown(self) -> int:
        """How many postings got no answer, so only a later read-back can tell their outcome."""
        return len(self.unanswered)


def tally(outcomes: Iterable[Sent]) -> Tally:
    """Count the outcomes of the orders a run sent."""
    done = list(outcomes)
    return Tally(
        posted=sum(1 for outcome in done if outcome.action == Action.POSTED),
        post_failed=sum(1 for outcome in done if outcome.action == Action.POST_FAILED),
        unanswered=tuple(outcome.transaction_id for outcome in done if outcome.unknown),
    )


def to_review(actions: Iterable[str]) -> int:
    """Return how many findings, by their actions, still need someone's review."""
    return sum(1 for action in actions if action in REVIEW_ACTIONS)


def conclude(
    *,
    review: int,
    tally: Tally,
    guardrail: bool,
    partial: bool,
    window_until: datetime,
    started_at: datetime,
) -> Conclusion:
    """Return how a run that reached its end concludes.

    Args:
        review: findings left for review (drift).
        tally: what became of the orders sent (an unknown outcome fails the run, and any
            failed posting keeps the watermark).
        guardrail: whether a guardrail stopped all posting.
        partial: a dry run or one limited to some companies; it never moves the watermark.
        window_until: the end of the run's window.
        started_at: when the run started.
    """
    exit_code = ExitCode.DRIFT if review else ExitCode.OK
    if tally.unknown:
        exit_code = ExitCode.FAILED
    if guardrail:
        exit_code = ExitCode.GUARDRAIL
    moves = not (partial or guardrail or tally.post_failed)
    # Never past the run's start: what Stripe and Moesif had not yet seen then, the next run
    # must read.
    return Conclusion(
        exit_code=exit_code,
        status=RunStatus.GUARDRAIL if guardrail else RunStatus.SUCCEEDED,
        watermark=min(window_until, started_at) if moves else None,
    )


def unanswered(counted: Tally) -> str:
    """Return the error line naming the postings that got no answer; empty if none did."""
    if not counted.unanswered:
        return ""
    return (
        f"error: {counted.unknown} posting(s) got no answer from Moesif: "
        f"{', '.join(counted.unanswered)}; a rerun reads the ledger back and sends none of them "
        "again unless Moesif's reports still lack it RECONCILE_MOESIF_REPORT_LAG after its send"
    )
