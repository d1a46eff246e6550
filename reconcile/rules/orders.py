"""Which missing movements become orders to post, and what each finding then says."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from reconcile.domain.ids import posting_description
from reconcile.domain.values import Entry, Sent, entry_type_of
from reconcile.domain.vocab import Action

UNREADABLE = (
    "Moesif holds a row with this transaction id that could not be read; "
    "not posted, check it in Moesif"
)


@dataclass(frozen=True)
class Missing:
    """A ``missing_in_moesif`` finding, as the plain values an order is made of."""

    transaction_id: str
    action: Action
    company_id: str
    subscription_id: str
    entry_type: str
    amount_minor: int
    currency: str
    stripe_object_id: str
    occurred_at: datetime | None = None
    """When the Stripe movement happened."""


@dataclass(frozen=True)
class Decision:
    """What becomes of one missing finding: its action and detail, and the order to send."""

    action: Action
    detail: str | None
    order: Entry | None = None


def decide(
    finding: Missing,
    *,
    unreadable: Collection[str],
    confirmed_by: Mapping[str, str],
    run_id: str,
) -> Decision:
    """Return what to do about a movement missing in Moesif.

    A transaction id that Moesif holds in a row it could not read is never posted; one whose
    posting an earlier run confirmed is not sent again; a finding the matcher did not mark
    ``would_post`` keeps its action. Anything else becomes an order.

    Args:
        finding: the missing movement.
        unreadable: transaction ids named by Moesif rows that could not be read.
        confirmed_by: transaction id to who posted it and had it confirmed (``run …``,
            ``webhook …``, ``top-up …``).
        run_id: this run, named in the posting's description.
    """
    if finding.transaction_id in unreadable:
        return Decision(Action.FLAGGED, UNREADABLE)
    earlier = confirmed_by.get(finding.transaction_id)
    if earlier is not None:
        return Decision(
            Action.FLAGGED,
            f"posted by {earlier} and confirmed by Moesif; "
            "not in Moesif's reports yet, so not sent again",
        )
    if finding.action != Action.WOULD_POST:
        return Decision(finding.action, None)
    return Decision(Action.WOULD_POST, None, order(finding, run_id))


def order(finding: Missing, run_id: str) -> Entry:
    """Return the balance transaction that puts a missing movement into Moesif."""
    return Entry(
        transaction_id=finding.transaction_id,
        company_id=finding.company_id,
        subscription_id=finding.subscription_id,
        entry_type=entry_type_of(finding.entry_type),
        amount_minor=finding.amount_minor,
        currency=finding.currency,
        description=posting_description(
            finding.entry_type, finding.transaction_id, finding.stripe_object_id, f"run {run_id}"
        ),
        occurred_at=finding.occurred_at,
    )


def held_already(outcomes: Sequence[Sent]) -> list[bool]:
    """Return, for each order sent, whether Moesif turned out to hold it where it belongs.

    Such a movement is matched rather than missing: the read before its first send found the
    row that a snapshot read earlier had not shown.
    """
    return [outcome.action == Action.NONE for outcome in outcomes]


def after_sending(
    outcomes: Sequence[Sent], orders: int, stopped_by: str | None = None
) -> list[Decision]:
    """Return each order's action and detail once sending ended.

    Args:
        outcomes: what happened to the orders sent, in order.
        orders: how many orders there were.
        stopped_by: why sending stopped before the rest, if it did; those are marked failed.
    """
    sent = [Decision(outcome.action, outcome.detail or None) for outcome in outcomes]
    if stopped_by is None:
        return sent
    failed = Decision(Action.POST_FAILED, f"not posted: {stopped_by}")
    return sent + [failed] * (orders - len(outcomes))
