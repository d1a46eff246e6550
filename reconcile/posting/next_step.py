"""What to do next with a posting, from its recorded status and what a read-back found.

The states, per transaction id::

    (none) ──read first──▶ held or misapplied                nothing sent, nothing kept
       └──── ──absent──▶ send ──▶ intent ──answer──▶ confirmed   final: never sent again
                                     │    ──refused / surely not sent──▶ failed
                                     └──  ──answer lost──▶ unknown

A posting never sent is first looked for in Moesif itself (:mod:`reconcile.posting.first_read`):
a row someone else wrote under its transaction id means it is not sent (held where it belongs,
or ``misapplied`` elsewhere), whatever the snapshot says.

Anything that may have been sent (an intent someone sent, unknown, failed) is read back from the
ledger before anything else happens: found means confirmed without sending. Not found means sent
again as the caller asks now when it failed (Moesif surely never applied it). An intent someone
sent, or an unknown outcome, may have been applied while Moesif's reports do not list it yet
(they lag its ledger), so absence proves nothing until the reports have had time to list it: it
is sent again, exactly as first sent, only when the read-back was made at least the report lag
(``RECONCILE_MOESIF_REPORT_LAG``) after its last send; before then it waits, unsent, for a later
call to read it back again. Right after a send whose answer was lost, it is never sent again in
the same call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reconcile.domain.ids import names_movement
from reconcile.domain.vocab import PostingStatus

DEFAULT_REPORT_LAG = timedelta(minutes=15)
"""How long Moesif's billing reports may take to list a row it applied, unless configured
(``RECONCILE_MOESIF_REPORT_LAG``). Moesif documents no figure: a quarter of an hour is a cautious
choice, long for a report to trail its ledger and short against a nightly run's cadence."""


class Step(StrEnum):
    """The next thing the engine does with a posting."""

    READ_FIRST = "read_first"
    """Never sent: look for rows carrying its transaction id in Moesif before sending."""
    SEND = "send"
    """Absent from Moesif, or surely never applied: send the entry as the caller gives it now."""
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
    WAIT_FOR_REPORTS = "wait_for_reports"
    """It may have been applied and the read-back came before the reports must list it: send
    nothing; a read-back at least the report lag after its last send decides."""


@dataclass(frozen=True)
class ReadBack:
    """What reading the ledger back found for one posting.

    Attributes:
        found_by_id: a row (in the snapshot or in Moesif) carries the posting's transaction id.
        anonymous: descriptions (``""`` when none) of rows without a transaction id on the same
            company and subscription, of the same type and amount, no older than the posting.
        confirmed_twins: other confirmed postings of the same place, type and amount since then,
            each of which may be one of the anonymous rows.
        settled: the ledger was read at least the report lag after the posting's last send, so
            its reports list what that send applied; only such a read proves absence. Unless
            said, a read-back proves nothing absent.
    """

    found_by_id: bool
    anonymous: tuple[str, ...] = ()
    confirmed_twins: int = 0
    settled: bool = False


def reports_settled(last_sent_at: datetime, read_at: datetime, report_lag: timedelta) -> bool:
    """Whether a ledger read at ``read_at`` lists what a send at ``last_sent_at`` applied.

    Moesif's billing reports may lag its ledger by up to ``report_lag``; a read that started
    sooner after the send may miss a row that is there.
    """
    return read_at >= last_sent_at + report_lag


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
    unnamed = sum(1 for description in read_back.anonymous if not names_movement(description))
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
        return Step.READ_FIRST
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
    if not read_back.settled:
        return Step.WAIT_FOR_REPORTS
    return Step.SEND_AS_RECORDED
