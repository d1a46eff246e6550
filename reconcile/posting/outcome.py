"""What one call of the engine came to, and the report action that stands for it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reconcile.domain.vocab import Action
from reconcile.rules.destination import Verdict


class Result(StrEnum):
    """How a call of :meth:`PostingEngine.post` ended."""

    POSTED = "posted"
    """Sent now, and Moesif confirmed it."""
    FOUND = "found"
    """Found in the ledger on read-back; confirmed without sending."""
    ALREADY_CONFIRMED = "already_confirmed"
    """Confirmed earlier, by this or another caller; not sent."""
    REFUSED = "refused"
    """Moesif refused it (a 4xx that retrying will not change); recorded failed."""
    UNKNOWN = "unknown"
    """Sent, the answer was lost and the ledger does not show it yet; a later call reads back."""
    BUSY = "busy"
    """Another caller is posting this transaction id right now; not sent."""
    HELD = "held"
    """Never sent, and Moesif holds a row under its id where it belongs (someone else wrote
    it); not sent, nothing recorded."""
    MISAPPLIED = "misapplied"
    """Never sent, and Moesif holds a row under its id on another company or subscription; not
    sent, nothing recorded, a finding for a person (:attr:`Outcome.verdict` names the row)."""


_ACTIONS = {
    Result.POSTED: Action.POSTED,
    Result.FOUND: Action.POSTED,
    Result.ALREADY_CONFIRMED: Action.FLAGGED,
    Result.REFUSED: Action.POST_FAILED,
    Result.UNKNOWN: Action.POST_FAILED,
    Result.BUSY: Action.POST_FAILED,
    Result.HELD: Action.NONE,
    Result.MISAPPLIED: Action.FLAGGED,
}


@dataclass(frozen=True)
class Outcome:
    """What happened to one entry; ``detail`` says it in words for a report.

    ``verdict`` is the posting rule's answer when the first read found the id in Moesif.
    """

    transaction_id: str
    result: Result
    detail: str = ""
    verdict: Verdict | None = None

    @property
    def action(self) -> Action:
        """The drift report's action: a confirmed posting the reports lack yet is flagged."""
        return _ACTIONS[self.result]

    @property
    def unknown(self) -> bool:
        """Whether only a later read-back can tell if Moesif holds it."""
        return self.result in (Result.UNKNOWN, Result.BUSY)

    @property
    def confirmed(self) -> bool:
        """Whether Moesif holds it, as confirmed now or earlier."""
        return self.result in (Result.POSTED, Result.FOUND, Result.ALREADY_CONFIRMED)
