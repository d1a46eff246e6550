"""The exactly-once posting engine: record the intent, send, settle; for any caller.

Per transaction id (unique in ``postings``, ever):

1. Record the intent in its own committed transaction. Two callers recording the same id at
   once are safe: the unique constraint decides, and nothing is recorded twice.
2. Hold the posting, so no other caller (thread, process or machine) works on it at the same
   time; a caller that cannot hold it sends nothing and hears :attr:`Result.BUSY`. The hold
   dies with its holder (a PostgreSQL advisory lock per transaction id; on SQLite one lock file
   beside the database, so postings there go one at a time).
3. A posting never sent is first looked for in Moesif itself, on every company
   (:mod:`reconcile.posting.first_read`): a row carrying its transaction id where it belongs
   means Moesif holds it (:attr:`Result.HELD`), one elsewhere is ``misapplied``
   (:attr:`Result.MISAPPLIED`); either way nothing is sent and its intent is withdrawn.
4. Under the hold, :func:`reconcile.posting.next_step.next_step` decides from the recorded status
   and, where something may have been sent, a read-back of the ledger (the snapshot first, then
   Moesif itself). A send counts the attempt, committed, before the POST; its outcome is
   recorded after. A confirmed posting is never sent again, by anyone. A posting that may have
   been applied (an unknown outcome, an intent whose send never settled) is sent again only
   when a read-back made at least ``report_lag`` after its last send still lacks it: Moesif's
   reports may not list a row yet, and absence read sooner proves nothing.

The engine does not know who calls it; ``origin`` names the caller in the record
(:mod:`reconcile.posting.origin`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from reconcile.db import postings
from reconcile.db.models import Posting
from reconcile.domain import origin as origins
from reconcile.domain.values import Entry, entry_type_of
from reconcile.domain.vocab import PostingStatus
from reconcile.errors import (
    CredentialsRejected,
    LockHeld,
    MoesifOutcomeUnknown,
    MoesifRejected,
    MoesifUnavailable,
    RunFailed,
)
from reconcile.lock import run_lock
from reconcile.moesif.client import MoesifClient
from reconcile.moesif.rows import normalise
from reconcile.posting.entry import AmountUnit, moesif_amount
from reconcile.posting.first_read import FirstRead, ReadEach
from reconcile.posting.next_step import (
    DEFAULT_REPORT_LAG,
    ReadBack,
    Step,
    next_step,
    reports_settled,
)
from reconcile.posting.outcome import Outcome, Result
from reconcile.posting.read_back import MARGIN, read_back_of
from reconcile.rules.destination import HELD, Movement, placed

log = logging.getLogger(__name__)

SURELY_NOT_APPLIED = (MoesifUnavailable, CredentialsRejected, ValueError)
"""Errors of a send after which Moesif surely did not apply it."""

SQLITE_HOLD = "postings"
"""The one lock SQLite postings are held under (a file ``<database>.postings.lock``)."""


class PostingEngine:
    """Posts entries to Moesif exactly once, recording each step in the snapshot database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        moesif: MoesifClient,
        *,
        amount_unit: AmountUnit,
        clock: Callable[[], datetime],
        report_lag: timedelta = DEFAULT_REPORT_LAG,
        first_read: FirstRead | None = None,
    ) -> None:
        """Post through ``moesif``, recording in short transactions from ``sessions``.

        Args:
            sessions: sessions on the snapshot database, migrated to the newest schema.
            moesif: the Moesif client (its retries, rate limit and sleep are the caller's).
            amount_unit: how Moesif amounts are written (``MOESIF_AMOUNT_UNIT``).
            clock: the current time, aware UTC.
            report_lag: how long Moesif's reports may take to list an applied row; a posting
                that may have been applied is sent again only when a read-back this long after
                its last send still lacks it (``RECONCILE_MOESIF_REPORT_LAG``).
            first_read: how Moesif is read before a posting's first send; by default around
                each posting (:class:`reconcile.posting.first_read.ReadEach`).
        """
        self._sessions = sessions
        self._moesif = moesif
        self._unit = amount_unit
        self._clock = clock
        self._report_lag = report_lag
        self._first_read = first_read or ReadEach(moesif, clock)
        with sessions() as session:
            bind = session.get_bind()
        self._engine: Engine = bind if isinstance(bind, Engine) else bind.engine

    def post(self, entry: Entry, *, origin: str) -> Outcome:
        """Post ``entry`` unless Moesif is known to hold it already; never twice.

        Args:
            entry: what to post, under its transaction id.
            origin: who asks, as :mod:`reconcile.posting.origin` writes it; recorded with a new
                intent (an existing posting keeps the origin of whoever first asked).

        Raises:
            MoesifUnavailable: Moesif could not be reached; recorded failed, a later call resends.
            CredentialsRejected: Moesif refused the token; recorded failed.
            RunFailed: Moesif could not be read back before a resend; nothing was sent.
            DatabaseUnavailable: the hold could not be taken.
        """
        with self._sessions.begin() as session:
            if postings.record_intent(session, self._intent(entry, origin)):
                log.debug("recorded the intent to post %s for %s", entry.transaction_id, origin)
        with ExitStack() as held:
            try:
                held.enter_context(run_lock(self._engine, self._hold_name(entry)))
            except LockHeld:
                return Outcome(
                    entry.transaction_id,
                    Result.BUSY,
                    "another caller is posting it at this moment; not sent, a later call checks",
                )
            return self._settle(entry)

    def _settle(self, entry: Entry) -> Outcome:
        """Carry out the next steps of a held posting until one ends the call."""
        posting = self._find(entry.transaction_id)
        status = _status(posting)
        step = next_step(status, transaction_id=entry.transaction_id)
        if step is Step.SKIP_CONFIRMED:
            return Outcome(entry.transaction_id, Result.ALREADY_CONFIRMED, _earlier(posting))
        if step is Step.READ_FIRST:
            held = self._held_already(entry, posting.created_at)
            if held is not None:
                return held
            step = Step.SEND
        if step is Step.READ_BACK:
            read_back = self._read_back(posting)
            step = next_step(status, read_back, transaction_id=entry.transaction_id)
        if step is Step.CONFIRM:
            self._record(entry.transaction_id, PostingStatus.CONFIRMED)
            return Outcome(
                entry.transaction_id,
                Result.FOUND,
                "found in Moesif on read-back after an unfinished attempt; not sent again",
            )
        if step is Step.SEND:
            self._refresh(entry)
            return self._send(entry)
        if step is Step.WAIT_FOR_REPORTS:
            due = posting.updated_at + self._report_lag
            return Outcome(
                entry.transaction_id,
                Result.UNKNOWN,
                "sent without an answer and not in Moesif's reports yet, which may lag; not sent "
                f"again, a read-back from {due.isoformat()} decides",
            )
        return self._send(_entry_of(posting))

    def _held_already(self, entry: Entry, intent_at: datetime) -> Outcome | None:
        """Look for the never-sent ``entry`` in Moesif; when a row carries it, withdraw it.

        Raises:
            ReconcileError: Moesif could not be read; nothing was sent.
        """
        movement = Movement(
            entry.currency, entry.company_id, entry.subscription_id, entry.transaction_id
        )
        verdict = placed(movement, self._first_read(entry, intent_at))
        if verdict.posts:
            return None
        with self._sessions.begin() as session:
            postings.withdraw(session, entry.transaction_id)
        if verdict == HELD:
            return Outcome(
                entry.transaction_id,
                Result.HELD,
                "already in Moesif under its transaction id, written by someone else; not sent",
                verdict,
            )
        log.warning("not posting %s: %s", entry.transaction_id, verdict.reason)
        return Outcome(entry.transaction_id, Result.MISAPPLIED, verdict.reason, verdict)

    def _send(self, entry: Entry) -> Outcome:
        now = self._clock()
        with self._sessions.begin() as session:
            postings.count_attempt(session, entry.transaction_id, now)
        try:
            self._moesif.post_balance_transaction(
                company_id=entry.company_id,
                subscription_id=entry.subscription_id,
                transaction_id=entry.transaction_id,
                entry_type=entry.entry_type,
                amount=moesif_amount(entry.amount_minor, entry.currency, self._unit),
                description=entry.description,
            )
        except MoesifOutcomeUnknown as error:
            self._record(entry.transaction_id, PostingStatus.UNKNOWN, str(error))
            return self._settle_lost_answer(entry)
        except MoesifRejected as error:
            self._record(entry.transaction_id, PostingStatus.FAILED, str(error))
            return Outcome(entry.transaction_id, Result.REFUSED, str(error))
        except SURELY_NOT_APPLIED as error:
            self._record(entry.transaction_id, PostingStatus.FAILED, str(error))
            raise
        except Exception as error:
            self._record(entry.transaction_id, PostingStatus.UNKNOWN, str(error))
            raise
        self._record(entry.transaction_id, PostingStatus.CONFIRMED)
        log.info("posted %s %s", entry.entry_type, entry.transaction_id)
        return Outcome(entry.transaction_id, Result.POSTED)

    def _settle_lost_answer(self, entry: Entry) -> Outcome:
        """Read the ledger back once after a lost answer; never resend within this call."""
        posting = self._find(entry.transaction_id)
        try:
            read_back = self._read_back(posting)
        except RunFailed as error:
            log.warning("could not read %s back: %s", entry.transaction_id, error)
            read_back = ReadBack(found_by_id=False)
        step = next_step(
            PostingStatus.UNKNOWN, read_back, transaction_id=entry.transaction_id, just_sent=True
        )
        if step is Step.CONFIRM:
            self._record(entry.transaction_id, PostingStatus.CONFIRMED)
            return Outcome(
                entry.transaction_id,
                Result.FOUND,
                "Moesif's answer was lost; found in Moesif on read-back",
            )
        return Outcome(
            entry.transaction_id,
            Result.UNKNOWN,
            "no answer from Moesif; the ledger is read back before any resend",
        )

    def _read_back(self, posting: Posting) -> ReadBack:
        """Read the ledger back for a posting: the snapshot first, then Moesif itself.

        The read is ``settled`` when it starts at least the report lag after the posting's last
        send (``updated_at``: a posting not confirmed is last updated when it is sent or when
        that send's outcome is recorded, never earlier than the send).
        """
        read_at = self._clock()
        with self._sessions() as session:
            if postings.in_ledger_snapshot(session, posting.transaction_id):
                return ReadBack(found_by_id=True)
        since = posting.created_at - MARGIN
        currencies = {posting.subscription_id: posting.currency}
        rows = (
            normalise(raw, amount_unit=self._unit, currency_for=currencies.get)
            for raw in self._moesif.billing_reports(
                since, self._clock() + timedelta(minutes=1), company_id=posting.company_id
            )
        )
        found = replace(
            read_back_of(rows, _entry_of(posting), posting.created_at),
            settled=reports_settled(posting.updated_at, read_at, self._report_lag),
        )
        if found.found_by_id or not found.anonymous:
            return found
        with self._sessions() as session:
            twins = postings.confirmed_alike(session, posting, since)
        return replace(found, confirmed_twins=twins)

    def _intent(self, entry: Entry, origin: str) -> dict[str, Any]:
        now = self._clock()
        return {
            "transaction_id": entry.transaction_id,
            "origin": origin,
            "run_id": origins.run_id_of(origin),
            **self._sent_values(entry),
            "status": PostingStatus.INTENT,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }

    def _sent_values(self, entry: Entry) -> dict[str, Any]:
        return {
            "company_id": entry.company_id,
            "subscription_id": entry.subscription_id,
            "entry_type": entry.entry_type,
            "amount_minor": entry.amount_minor,
            "currency": entry.currency,
            "amount_sent": str(moesif_amount(entry.amount_minor, entry.currency, self._unit)),
            "description": entry.description,
        }

    def _refresh(self, entry: Entry) -> None:
        """Make the record say what is sent now (a failed posting may be sent as asked today)."""
        with self._sessions.begin() as session:
            postings.refresh(session, entry.transaction_id, self._sent_values(entry), self._clock())

    def _find(self, transaction_id: str) -> Posting:
        with self._sessions() as session:
            posting = postings.find(session, transaction_id)
            if posting is None:
                raise AssertionError(f"the intent of {transaction_id} was recorded but is gone")
            session.expunge(posting)
        return posting

    def _record(self, transaction_id: str, status: PostingStatus, error: str | None = None) -> None:
        with self._sessions.begin() as session:
            postings.set_status(session, transaction_id, status, self._clock(), error)

    def _hold_name(self, entry: Entry) -> str:
        if self._engine.dialect.name == "postgresql":
            return f"posting:{entry.transaction_id}"
        return SQLITE_HOLD


def _status(posting: Posting) -> PostingStatus | None:
    """The recorded status, or ``None`` for an intent no attempt has been counted for."""
    status = PostingStatus(posting.status)
    if status is PostingStatus.INTENT and posting.attempts == 0:
        return None
    return status


def _entry_of(posting: Posting) -> Entry:
    return Entry(
        transaction_id=posting.transaction_id,
        company_id=posting.company_id,
        subscription_id=posting.subscription_id,
        entry_type=entry_type_of(posting.entry_type),
        amount_minor=posting.amount_minor,
        currency=posting.currency,
        description=posting.description,
    )


def _earlier(posting: Posting) -> str:
    when = posting.confirmed_at.isoformat() if posting.confirmed_at else "earlier"
    return (
        f"posted by {origins.describe(posting.origin)} at {when} and confirmed by Moesif; "
        "not in Moesif's reports yet, so not sent again"
    )
