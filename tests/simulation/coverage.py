"""What the simulation's examples covered, per test: kinds counted, then required of the run.

A simulation whose strongest checks never meet a non-zero balance, a kill at a POST or an
incomplete read passes without testing anything. Each test notes what its examples met (also
as hypothesis events, shown with ``--hypothesis-show-statistics``) and fails when a kind it
requires never occurred; the counts go to the terminal summary.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import event

NON_ZERO_BALANCES = "balances compared: non-zero"
LISTING_SHUFFLED = "listing order: seeded, other in the second world"
ROWS_LEFT_OUT = "reads: rows left out"
GONE_CHECKED = "gone rows checked: ledger rows compared"
KILL_BEFORE_APPLY = "SIGKILL at a POST before Moesif applied it"
KILL_AFTER_APPLY = "SIGKILL at a POST after Moesif applied it"
KILL_OTHER = "SIGKILL at another request"

BY_TEST: dict[str, Counter[str]] = {}
"""Test node id to the kinds its examples met and how often (for the terminal summary)."""


class Coverage:
    """The kinds one test's examples met; counts add up over every example it runs."""

    def __init__(self, test: str) -> None:
        """Start counting for ``test`` (its node id)."""
        self.counts: Counter[str] = BY_TEST.setdefault(test, Counter())

    def note(self, kind: str, count: int = 1) -> None:
        """Count ``count`` occurrences of ``kind`` (nothing when zero); tell hypothesis too."""
        if count <= 0:
            return
        event(kind)
        self.counts[kind] += count

    def require(self, *kinds: str) -> None:
        """Fail unless every kind occurred at least once in this test's examples."""
        missing = [kind for kind in kinds if not self.counts[kind]]
        assert not missing, f"the simulation never covered {missing}; it covered {self.counts}"
