"""How a run moves findings through their life: opened, seen again, settled, reopened, closed.

A finding's states (contract sections 6 and 10a): ``open`` needs review; ``assigned`` needs
review and has an owner (a run treats it as open); ``resolved`` is an
operator's claim that the drift is fixed, awaiting the next run's check; ``closed`` is settled for
good; ``ignored`` is drift accepted with a reason. :func:`next_step` decides, for one finding,
what a run does given its state and what the run saw; :func:`transitions` applies it to all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from reconcile.domain.vocab import NEEDS_REVIEW, REVIEW_ACTIONS, ClosedBy, FindingStatus

OPEN = FindingStatus.OPEN
ASSIGNED = FindingStatus.ASSIGNED
RESOLVED = FindingStatus.RESOLVED
CLOSED = FindingStatus.CLOSED
IGNORED = FindingStatus.IGNORED
BY_RUN = ClosedBy.RUN
BY_OPERATOR = ClosedBy.OPERATOR

RECHECKED = NEEDS_REVIEW | {RESOLVED}
"""States a run compares again wherever the subject lies: still open, or claimed fixed."""

__all__ = [
    "ASSIGNED",
    "BY_OPERATOR",
    "BY_RUN",
    "CLOSED",
    "IGNORED",
    "NEEDS_REVIEW",
    "OPEN",
    "RECHECKED",
    "RESOLVED",
    "REVIEW_ACTIONS",
    "Known",
    "Step",
    "Transitions",
    "next_step",
    "transitions",
]


class Step(StrEnum):
    """What one run does to one finding."""

    NEW = "new"
    """Found for review, never seen before: opened."""
    SEEN = "seen"
    """Open and found again: stays open, seen once more."""
    SETTLED = "settled"
    """Open, compared again and no longer found: reported ``resolved`` once, then closed."""
    WAITING = "waiting"
    """Open, but the run could not compare it: still open, listed as such."""
    REOPENED = "reopened"
    """Resolved or closed, yet found again: open again, reported ``reopened``."""
    CONFIRMED = "confirmed"
    """Resolved by an operator and no longer found: closed for good, not reported again."""
    AWAITING = "awaiting"
    """Resolved by an operator, not compared by this run: still awaiting its check."""
    SILENCED = "silenced"
    """Ignored: whatever the run finds, it is neither reported nor counted."""
    UNCHANGED = "unchanged"
    """Nothing to do (closed or ignored and not found, or unknown and not found)."""


def next_step(status: str | None, *, found: bool, compared: bool) -> Step:
    """Return what a run does to a finding in ``status`` (``None``: never seen before).

    Args:
        status: the finding's state before the run.
        found: whether the run found the drift needing review.
        compared: whether the run compared the finding's subject again (it could read it).
    """
    if status == IGNORED:
        return Step.SILENCED if found else Step.UNCHANGED
    if status is None:
        return Step.NEW if found else Step.UNCHANGED
    if status in NEEDS_REVIEW:
        if found:
            return Step.SEEN
        return Step.SETTLED if compared else Step.WAITING
    if status == RESOLVED:
        if found:
            return Step.REOPENED
        return Step.CONFIRMED if compared else Step.AWAITING
    return Step.REOPENED if found else Step.UNCHANGED


@dataclass(frozen=True)
class Known:
    """A finding as the database knows it: its status, who closed it, what it is about."""

    status: str
    closed_by: str | None = None
    category: str = ""
    subject_present: bool = True
    """Whether this run could see its subject (a Stripe movement it does not hold may not be)."""


@dataclass(frozen=True)
class Transitions:
    """What one run does to the findings' states, by step."""

    steps: Mapping[str, Step]

    def of(self, *steps: Step) -> frozenset[str]:
        """Return the finding ids that take one of ``steps``."""
        return frozenset(fid for fid, step in self.steps.items() if step in steps)

    @property
    def new(self) -> frozenset[str]:
        """Opened by this run."""
        return self.of(Step.NEW)

    @property
    def again(self) -> frozenset[str]:
        """Found again and open after the run (seen once more, or reopened)."""
        return self.of(Step.SEEN, Step.REOPENED)

    @property
    def settled(self) -> frozenset[str]:
        """Open before, no longer found: reported ``resolved`` and closed by the run."""
        return self.of(Step.SETTLED)

    @property
    def reopened(self) -> frozenset[str]:
        """Resolved or closed before, found again: reported ``reopened``."""
        return self.of(Step.REOPENED)

    @property
    def confirmed(self) -> frozenset[str]:
        """An operator's ``resolve`` the run checked and found true: closed for good."""
        return self.of(Step.CONFIRMED)

    @property
    def waiting(self) -> frozenset[str]:
        """Open, not compared by this run: listed as still open."""
        return self.of(Step.WAITING)

    @property
    def silenced(self) -> frozenset[str]:
        """Ignored and found again: left out of the report, never counted."""
        return self.of(Step.SILENCED)


def transitions(
    known: Mapping[str, Known], reported: Collection[str], rechecked: Collection[str]
) -> Transitions:
    """Return the step each finding takes in a run that found ``reported`` and rechecked some.

    Args:
        known: every finding the database holds that this run may touch, by finding id.
        reported: the finding ids this run found needing review.
        rechecked: the findings open or resolved before the run that it compared again (all
            of them, or those of the companies it was limited to).
    """
    found = set(reported)
    steps: dict[str, Step] = {}
    for finding_id in found | set(rechecked):
        state = known.get(finding_id)
        if state is None and finding_id not in found:
            continue
        compared = finding_id in rechecked and (state is None or state.subject_present)
        steps[finding_id] = next_step(
            None if state is None else state.status, found=finding_id in found, compared=compared
        )
    return Transitions(steps)
