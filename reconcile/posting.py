"""Posting missing credits and debits to Moesif exactly once, across crashes and reruns.

The protocol, per transaction id:

1. In its own committed transaction, record the intent (the transaction id is unique in
   ``postings``, ever). A confirmed posting is never sent again, by any run.
2. Send the balance transaction.
3. Record the outcome: ``confirmed`` on success; ``unknown`` when the request may have reached
   Moesif without an answer; ``failed`` when Moesif refused it or surely did not get it.
   An unknown posting is only ever resent as it was first sent; a failed one, which Moesif
   surely never applied, is sent as the run's current order says.

A posting found not confirmed (a crash after step 1 or 2, an unknown or failed outcome) is
resolved by reading the ledger back, the snapshot first and then Moesif itself, before anything is
sent again. Moesif also ignores a repeated ``transaction_id``; the read-back does not rely on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from reconcile.db import postings
from reconcile.db.models import Posting
from reconcile.db.postings import PostingStatus
from reconcile.domain import Action, EntryType, LedgerRow
from reconcile.errors import GuardrailTripped, MoesifRejected, RunFailed
from reconcile.moesif.client import MoesifClient, MoesifOutcomeUnknown
from reconcile.moesif.rows import normalise
from reconcile.money import to_major

log = logging.getLogger(__name__)

READ_BACK_MARGIN = timedelta(hours=1)
"""How far before an intent a read-back looks for the row it may have created."""


@dataclass(frozen=True)
class Order:
    """One balance transaction to send to Moesif."""

    transaction_id: str
    company_id: str
    subscription_id: str
    entry_type: Literal["credit", "debit"]
    amount_minor: int
    currency: str
    description: str


@dataclass(frozen=True)
class Outcome:
    """What happened to one order; ``unknown`` when only a later read-back can tell."""

    transaction_id: str
    action: Action
    detail: str
    unknown: bool = False


def moesif_amount(amount_minor: int, currency: str, unit: Literal["major", "minor"]) -> Decimal:
    """Return the amount as Moesif expects it: currency units, or minor units for old setups."""
    return to_major(amount_minor, currency) if unit == "major" else Decimal(amount_minor)


def check_guardrails(
    orders: Sequence[Order], *, max_postings: int, max_total: Decimal | None
) -> None:
    """Raise GuardrailTripped when the orders exceed the run's limits; nothing is posted then."""
    if len(orders) > max_postings:
        raise GuardrailTripped(
            f"the run would post {len(orders)} balance transactions, more than "
            f"RECONCILE_MAX_POSTINGS={max_postings}; nothing was posted"
        )
    if max_total is None:
        return
    total = sum((to_major(order.amount_minor, order.currency) for order in orders), Decimal(0))
    if total > max_total:
        raise GuardrailTripped(
            f"the run would post {total} in major units, more than "
            f"RECONCILE_MAX_POSTING_TOTAL={max_total}; nothing was posted"
        )


class Poster:
    """Sends orders to Moesif exactly once, recording each step in the snapshot database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: MoesifClient,
        *,
        run_id: str,
        amount_unit: Literal["major", "minor"],
        clock: Callable[[], datetime],
    ) -> None:
        """Post through ``client``, recording in short transactions from ``sessions``."""
        self._sessions = sessions
        self._client = client
        self._run_id = run_id
        self._unit = amount_unit
        self._clock = clock

    def post(self, order: Order) -> Outcome:
        """Post one order unless it is known to be in Moesif already.

        Raises:
            MoesifUnavailable: Moesif could not be reached after retries; a rerun resumes.
            CredentialsRejected: Moesif refused the token.
        """
        with self._sessions.begin() as session:
            existing = postings.find(session, order.transaction_id)
            if existing is None:
                session.add(self._intent(order))
            elif existing.status == PostingStatus.CONFIRMED:
                return Outcome(order.transaction_id, Action.FLAGGED, _earlier(existing))
            elif existing.status == PostingStatus.FAILED:
                _refresh(existing, order, self._unit)
            else:
                order = _order_of(existing)
        if existing is not None and self._already_applied(existing):
            self._record(order.transaction_id, PostingStatus.CONFIRMED)
            return Outcome(
                order.transaction_id,
                Action.POSTED,
                "found in Moesif on read-back after an unfinished attempt; not sent again",
            )
        return self._send(order)

    def _intent(self, order: Order) -> Posting:
        now = self._clock()
        return Posting(
            transaction_id=order.transaction_id,
            run_id=self._run_id,
            company_id=order.company_id,
            subscription_id=order.subscription_id,
            entry_type=order.entry_type,
            amount_minor=order.amount_minor,
            currency=order.currency,
            amount_sent=str(moesif_amount(order.amount_minor, order.currency, self._unit)),
            description=order.description,
            status=PostingStatus.INTENT,
            attempts=0,
            created_at=now,
            updated_at=now,
        )

    def _send(self, order: Order) -> Outcome:
        with self._sessions.begin() as session:
            postings.count_attempt(session, order.transaction_id, self._clock())
        try:
            self._client.post_balance_transaction(
                company_id=order.company_id,
                subscription_id=order.subscription_id,
                transaction_id=order.transaction_id,
                entry_type=order.entry_type,
                amount=moesif_amount(order.amount_minor, order.currency, self._unit),
                description=order.description,
            )
        except MoesifOutcomeUnknown as error:
            self._record(order.transaction_id, PostingStatus.UNKNOWN, str(error))
            return self._settle_unknown(order)
        except MoesifRejected as error:
            self._record(order.transaction_id, PostingStatus.FAILED, str(error))
            return Outcome(order.transaction_id, Action.POST_FAILED, str(error))
        except Exception as error:
            self._record(order.transaction_id, PostingStatus.FAILED, str(error))
            raise
        self._record(order.transaction_id, PostingStatus.CONFIRMED)
        log.info("posted %s %s", order.entry_type, order.transaction_id)
        return Outcome(order.transaction_id, Action.POSTED, "")

    def _settle_unknown(self, order: Order) -> Outcome:
        """Read the ledger back once after a lost answer; never resend within this run."""
        with self._sessions() as session:
            posting = postings.find(session, order.transaction_id)
        try:
            applied = posting is not None and self._already_applied(posting)
        except RunFailed:
            applied = False
        if applied:
            self._record(order.transaction_id, PostingStatus.CONFIRMED)
            return Outcome(
                order.transaction_id,
                Action.POSTED,
                "Moesif's answer was lost; found in Moesif on read-back",
            )
        return Outcome(
            order.transaction_id,
            Action.POST_FAILED,
            "no answer from Moesif; the next run reads the ledger back before any resend",
            unknown=True,
        )

    def _record(self, transaction_id: str, status: PostingStatus, error: str | None = None) -> None:
        with self._sessions.begin() as session:
            postings.set_status(session, transaction_id, status, self._clock(), error)

    def _already_applied(self, posting: Posting) -> bool:
        """Read the ledger back: is this posting's row in Moesif?

        A row with the transaction id says yes. Reports that leave ids out are read with care:
        an id-less row of the same place, type and amount says yes when its description names
        this posting's Stripe id, or when there are more such anonymous rows than other
        confirmed postings that could be them; otherwise the outcome stays unknown.
        """
        with self._sessions() as session:
            if postings.in_ledger_snapshot(session, posting.transaction_id):
                return True
        since = posting.created_at - READ_BACK_MARGIN
        until = self._clock() + timedelta(minutes=1)
        subscriptions: dict[str, str] = {posting.subscription_id: posting.currency}
        anonymous = 0
        for raw in self._client.billing_reports(since, until, company_id=posting.company_id):
            row = normalise(raw, amount_unit=self._unit, currency_for=subscriptions.get)
            if row.transaction_id == posting.transaction_id:
                return True
            if row.transaction_id or not _same_movement(row, posting):
                continue
            if posting.transaction_id in (row.description or ""):
                return True
            if not _names_stripe_id(row.description):
                anonymous += 1
        if anonymous == 0:
            return False
        with self._sessions() as session:
            return anonymous > postings.confirmed_alike(session, posting, since)


def _same_movement(row: LedgerRow, posting: Posting) -> bool:
    """A row without an id that could be this posting: same place, type, amount, not older."""
    return (
        row.company_id == posting.company_id
        and row.subscription_id == posting.subscription_id
        and row.entry_type == EntryType(posting.entry_type)
        and row.amount_minor == posting.amount_minor
        and row.created_at >= posting.created_at - READ_BACK_MARGIN
    )


def _refresh(posting: Posting, order: Order, unit: Literal["major", "minor"]) -> None:
    """Send a posting Moesif surely never applied as today's order says (a mapping fixed since)."""
    posting.company_id = order.company_id
    posting.subscription_id = order.subscription_id
    posting.amount_minor = order.amount_minor
    posting.currency = order.currency
    posting.amount_sent = str(moesif_amount(order.amount_minor, order.currency, unit))
    posting.description = order.description


def _names_stripe_id(text: str | None) -> bool:
    """Whether a description names some Stripe movement (``pi_…``, ``re_…``, ``txn_…``)."""
    return bool(text) and any(prefix in str(text) for prefix in ("pi_", "re_", "txn_"))


def _order_of(posting: Posting) -> Order:
    entry_type: Literal["credit", "debit"] = "debit" if posting.entry_type == "debit" else "credit"
    return Order(
        transaction_id=posting.transaction_id,
        company_id=posting.company_id,
        subscription_id=posting.subscription_id,
        entry_type=entry_type,
        amount_minor=posting.amount_minor,
        currency=posting.currency,
        description=posting.description,
    )


def _earlier(posting: Posting) -> str:
    when = posting.confirmed_at.isoformat() if posting.confirmed_at else "earlier"
    return (
        f"posted by run {posting.run_id} at {when} and confirmed by Moesif; "
        "not in Moesif's reports yet, so not sent again"
    )
