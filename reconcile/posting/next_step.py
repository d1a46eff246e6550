"""What to do next with a posting, from its recorded status and what a read-back found.

The states, per transaction id::

    (none) ──send──▶ intent ──answer──▶ confirmed           final: never sent again, by anyone
                        │    ──refused / surely not sent──▶ failed
                        └──  ──answer lost──▶ unknown

Anything that may have been sent (an intent someone sent, unknown, failed) is read back from the
ledger before anything else happens: found means confirmed without sending; not found means sent
again, as it was first sent (intent, unknown) or as the caller asks now (failed, which Moesif
surely never applied). Right after a send whose answer was lost, not found means left unknown:
the ledger may not show the row yet, so a later call reads it back again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

TRANSACTION_ID_PREFIXES = ("pi_", "re_", "txn_")
"""The Stripe ids postings are made under (contract section 4)."""


class PostingStatus(StrEnum):
    """Where a recorded posting stands; only ``confirmed`` is final."""

    INTENT = "intent"
    CONFIRMED = "confirmed"
    UNKNOWN = "unknown"
    FAILED = "failed"


class Step(StrEnum):
    """The next thing the engine does with a posting."""

    SEND = "send"
    """Never sent, or surely never applied: send the entry as the caller gives it now."""
    READ_BACK = "read_back"
    """It may have been sent: read the ledger back before deciding."""
    SEND_AS_RECORDED = "send_as_recorded"
    """Sent before with no trace in the ledger: send it again exactly as first sent."""
    CONFIRM = "confirm_without_sending"
    """The ledger holds it: record it confirmed, send nothing."""
    SKIP_CONFIRMED = "skip_already_confirmed"
    """Confirmed earlier, by any caller: send nothing."""
    LEAVE_UNKNOWN = "leave_unknown"
    """Its answer was lost just now and the ledger does not show it (yet): send nothing."""


@dataclass(frozen=True)
class ReadBack:
    """What reading the ledger back found for one posting.

    Attributes:
        found_by_id: a row (in the snapshot or in Moesif) carries the posting's transaction id.
        anonymous: descriptions (``""`` when none) of rows without a transaction id on the same
            company and subscription, of the same type and amount, no older than the posting.
        confirmed_twins: other confirmed postings of the same place, type and amount since then,
            each of which may be one of the anonymous rows.
    """

    found_by_id: bool
    anonymous: tuple[str, ...] = ()
    confirmed_twins: int = 0


def applied(read_back: ReadBack, transaction_id: str) -> bool:
    """Whether the read-back shows that Moesif applied the posting ``transaction_id``.

    A row with the id says yes. An anonymous row says yes when its description names this
    posting's id; rows whose description names another Stripe movement are someone else's. The
    remaining anonymous rows say yes only when there are more of them than confirmed twins that
    could be them; otherwise a twin's row could be mistaken for a post that never arrived.
    """
    if read_back.found_by_id:
        return True
    if any(transaction_id in description for description in read_back.anonymous):
        return True
    unnamed = sum(1 for description in read_back.anonymous if not _names_movement(description))
    return unnamed > read_back.confirmed_twins


def next_step(
    status: PostingStatus | None,
    read_back: ReadBack | None = None,
    *,
    transaction_id: str,
    just_sent: bool = False,
) -> Step:
    """Return the next step for a posting.

    Args:
        status: the recorded status; ``None`` when nothing was ever sent (no row, or an intent
            that no attempt has been counted for).
        read_back: what reading the ledger back found, once it has been read.
        transaction_id: the posting's transaction id.
        just_sent: this call sent it a moment ago and lost the answer.
    """
    if status is None:
        return Step.SEND
    if status is PostingStatus.CONFIRMED:
        return Step.SKIP_CONFIRMED
    if read_back is None:
        return Step.READ_BACK
    if applied(read_back, transaction_id):
        return Step.CONFIRM
    if just_sent:
        return Step.LEAVE_UNKNOWN
    if status is PostingStatus.FAILED:
        return Step.SEND
    return Step.SEND_AS_RECORDED


def _names_movement(description: str) -> bool:
    return any(prefix in description for prefix in TRANSACTION_ID_PREFIXES)
