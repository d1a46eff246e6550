"""Every status, category, action and kind reconcile names, each spelled once."""

from __future__ import annotations

from enum import StrEnum


class EntryType(StrEnum):
    """The kind of a Moesif balance movement."""

    CREDIT = "credit"
    DEBIT = "debit"
    PROMOTION = "promotion"
    ADJUSTMENT = "adjustment"
    USAGE = "usage"


class Source(StrEnum):
    """Which Stripe movement an expected entry mirrors."""

    TOPUP = "topup"
    REFUND = "refund"
    DISPUTE = "dispute"
    DISPUTE_REVERSAL = "dispute_reversal"
    REFUND_FAILURE = "refund_failure"


class Category(StrEnum):
    """Drift categories of the report (contract section 6)."""

    MISSING_IN_MOESIF = "missing_in_moesif"
    AMOUNT_MISMATCH = "amount_mismatch"
    DUPLICATE_IN_MOESIF = "duplicate_in_moesif"
    MISSING_IN_STRIPE = "missing_in_stripe"
    CURRENCY_MISMATCH = "currency_mismatch"
    UNMAPPED_CUSTOMER = "unmapped_customer"
    MATCHED_BY_AMOUNT = "matched_by_amount"
    MISAPPLIED = "misapplied"
    UNREADABLE = "unreadable"
    BALANCE_BREAK = "balance_break"
    """Moesif's running balance of a subscription does not add up (contract section 11)."""
    STRIPE_TOTAL_MISMATCH = "stripe_total_mismatch"
    """The run's Stripe read does not add up to Stripe's own figures (contract section 11)."""


class Action(StrEnum):
    """What the run did about a finding."""

    POSTED = "posted"
    WOULD_POST = "would_post"
    POST_FAILED = "post_failed"
    FLAGGED = "flagged"
    NONE = "none"
    RESOLVED = "resolved"
    """A finding open before this run that it found settled: reported once more, then closed."""
    REOPENED = "reopened"
    """A finding closed before (an operator's ``resolve``, or a run) whose drift is there."""


REVIEW_ACTIONS = frozenset({Action.FLAGGED, Action.WOULD_POST, Action.POST_FAILED, Action.REOPENED})
"""Actions that leave a finding for someone to review: they count for exit 1 and are notified."""


class UnreadableSource(StrEnum):
    """Which side an unreadable record came from."""

    STRIPE = "stripe"
    MOESIF = "moesif"


ROW_CATEGORIES = frozenset(
    {Category.MISSING_IN_STRIPE, Category.DUPLICATE_IN_MOESIF, Category.MISAPPLIED}
)
"""Categories about one Moesif row: several may share a Stripe movement, so the row names them."""


class PostingStatus(StrEnum):
    """Where a recorded posting stands; only ``confirmed`` is final."""

    INTENT = "intent"
    CONFIRMED = "confirmed"
    UNKNOWN = "unknown"
    FAILED = "failed"


class RunStatus(StrEnum):
    """How a run ended (``running`` while it runs)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    GUARDRAIL = "guardrail"
    CRASHED = "crashed"


class FindingStatus(StrEnum):
    """Where a finding stands; ``open`` and ``assigned`` count for review (``rules.lifecycle``).

    ``resolved`` is an operator's claim awaiting the next run's check; ``closed`` is settled
    for good (by a run that found the drift gone, or a claim a run confirmed).
    """

    OPEN = "open"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    CLOSED = "closed"
    IGNORED = "ignored"


NEEDS_REVIEW = frozenset({FindingStatus.OPEN, FindingStatus.ASSIGNED})
"""States of a finding still needing review: open, with or without an owner."""


class NoteAction(StrEnum):
    """What a ``finding_notes`` row records, beside the statuses a finding is closed with."""

    ASSIGNED = "assigned"
    COMMENTED = "commented"
    CORRECTED = "corrected"
    REOPENED = "reopened"


RUN_ACTOR = "run"
"""The actor of what a run does to a finding."""


class ClosedBy(StrEnum):
    """Who closed a finding."""

    RUN = "run"
    OPERATOR = "operator"


class NoteSource(StrEnum):
    """Where an operator's action came from."""

    CLI = "cli"
    PAGE = "page"


class EventStatus(StrEnum):
    """Where a recorded event stands."""

    RECEIVED = "received"
    RETRY = "retry"
    POSTED = "posted"
    IGNORED = "ignored"
    UNMAPPED = "unmapped"
    REFUSED = "refused"
    """The posting rule refused a movement (currency, subscription, a row elsewhere): a finding."""


PENDING_EVENTS = (EventStatus.RECEIVED, EventStatus.RETRY)
"""Statuses the worker still has to act on (also after a crash or restart)."""
