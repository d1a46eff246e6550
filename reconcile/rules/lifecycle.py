"""How a run moves findings through their life: new, seen again, settled, or left closed."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

OPEN = "open"
RESOLVED = "resolved"
IGNORED = "ignored"
BY_RUN = "run"
BY_OPERATOR = "operator"

REVIEW_ACTIONS = frozenset({"flagged", "would_post", "post_failed"})
"""Actions that keep a finding open: someone has to look at it."""


@dataclass(frozen=True)
class Known:
    """A finding as the database knows it: its status, who closed it, what it is about."""

    status: str
    closed_by: str | None = None
    category: str = ""
    subject_present: bool = True
    """Whether this run could see its subject (only an ``unreadable`` one may not be)."""


@dataclass(frozen=True)
class Transitions:
    """What one run does to the findings' states."""

    new: frozenset[str]
    """Reported for review and never seen before: opened."""
    again: frozenset[str]
    """Reported and known: seen once more (a finding a run had settled is open again)."""
    settled: frozenset[str]
    """Open, re-checked by this run and no longer found: resolved by the run."""
    silenced: frozenset[str]
    """Reported again but closed by an operator: stays closed, never counts for review."""


def transitions(
    known: Mapping[str, Known], reported: Collection[str], rechecked: Collection[str]
) -> Transitions:
    """Return the transitions of a run that reported ``reported`` and re-checked ``rechecked``.

    Args:
        known: every finding the database holds that this run may touch, by finding id.
        reported: the finding ids this run found needing review.
        rechecked: the open findings this run compared again (all of them, or those of the
            companies it was limited to).
    """
    found = set(reported)
    silenced = {
        finding_id
        for finding_id in found
        if finding_id in known
        and known[finding_id].status != OPEN
        and known[finding_id].closed_by == BY_OPERATOR
    }
    settled = {
        finding_id
        for finding_id in rechecked
        if finding_id not in found
        and finding_id in known
        and known[finding_id].status == OPEN
        and known[finding_id].subject_present
    }
    return Transitions(
        new=frozenset(found - set(known)),
        again=frozenset((found & set(known)) - silenced),
        settled=frozenset(settled),
        silenced=frozenset(silenced),
    )
