"""The worker that drains recorded events: map, post through the injected poster, retry later."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

import stripe
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconcile.accounts.listing import on_account
from reconcile.db.finding_states import open_at_once
from reconcile.domain.values import Entry, ExpectedEntry
from reconcile.domain.vocab import Action, EventStatus
from reconcile.errors import ReconcileError
from reconcile.posting.outcome import Outcome, Result
from reconcile.rules.destination import Verdict
from reconcile.serve import inbox
from reconcile.serve.destinations import Destinations, finding_of, movement_of
from reconcile.serve.event_entries import EventOrders, EventPlan, orders_of, plan_event
from reconcile.stripe.events import balance_transaction_ids, refund_ids
from reconcile.stripe.extract import extract_by_ids

log = logging.getLogger(__name__)

IDLE_WAIT = 5.0
"""Seconds the worker waits for a wake-up before looking for due events again."""


class PostOrder(Protocol):
    """The posting step: send one order exactly once and say what happened."""

    def __call__(self, order: Entry, origin: str) -> Outcome:
        """Post ``order``; ``origin`` names the caller (``webhook:evt_…``) for the record."""


class EventWorker:
    """Drains ``webhook_events`` in a thread: one event at a time, oldest first.

    Each due event is planned (:func:`plan_event`), its objects fetched from Stripe and mapped
    as the nightly run maps them, each movement put to the posting rule the nightly run and
    ``/top-up`` ask (``destinations``), and each order posted through ``post``. A movement the
    rule refuses is not posted; it is an open finding at once, in the rule's category. A
    failure (Stripe or Moesif unreachable, the database) leaves the event to retry after a
    backoff; events still pending after a crash or restart are picked up again, and the poster
    never posts one transaction id twice.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        stripe_client: stripe.StripeClient,
        post: PostOrder,
        *,
        destinations: Destinations,
        clock: Callable[[], datetime],
        wait: Callable[[threading.Event, float], object] | None = None,
    ) -> None:
        """Drain with ``sessions``, fetch with ``stripe_client``, post with ``post``.

        ``wait(event, seconds)`` sleeps until woken or the time has passed (injectable).
        """
        self._sessions = sessions
        self._stripe = stripe_client
        self._connected: dict[str, stripe.StripeClient] = {}
        self._post = post
        self._destinations = destinations
        self._clock = clock
        self._wait = wait or (lambda flag, seconds: flag.wait(seconds))
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start draining in a background thread."""
        self._thread = threading.Thread(target=self._loop, name="webhook-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for due events now (called after an event is recorded)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the event in hand is finished; its posting is never cut short."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.drain()
            except SQLAlchemyError as error:
                log.warning("could not read recorded events: %s", type(error).__name__)
            except Exception as error:  # noqa: BLE001 - the worker outlives any one failure
                log.warning("the event worker met %s; it carries on", type(error).__name__)
            if not self._stopping.is_set():
                self._wait(self._wake, self._idle_seconds())

    def drain(self) -> int:
        """Act on every event due now; return how many were acted on."""
        done = 0
        while not self._stopping.is_set():
            batch = inbox.due(self._sessions, self._clock())
            if not batch:
                return done
            for event_id in batch:
                if self._stopping.is_set():
                    return done
                if not inbox.claim(self._sessions, event_id, self._clock()):
                    continue
                self.process(event_id)
                done += 1
        return done

    def _idle_seconds(self) -> float:
        """Seconds until the next pending event falls due, at most :data:`IDLE_WAIT`."""
        try:
            due_at = inbox.next_due(self._sessions)
        except SQLAlchemyError:
            return IDLE_WAIT
        if due_at is None:
            return IDLE_WAIT
        return min(IDLE_WAIT, max(0.05, (due_at - self._clock()).total_seconds()))

    def process(self, event_id: str) -> EventStatus:
        """Act on one recorded (and claimed) event and record the result; return its new status.

        An entry another caller is posting at that moment (:attr:`Result.BUSY`) gives the event
        back to be tried again shortly, without counting an attempt.
        """
        event = inbox.payload(self._sessions, event_id)
        plan = plan_event(event)
        if not plan.handled:
            inbox.settle(self._sessions, event_id, EventStatus.IGNORED, plan.note)
            return EventStatus.IGNORED
        try:
            origin = inbox.origin_of(event_id)
            entries = {entry.transaction_id: entry for entry in self._entries(plan)}
            found = orders_of(
                [
                    (entry, self._destinations.verdict(movement_of(entry), plan.sources))
                    for entry in entries.values()
                ],
                origin,
            )
            if found.refused:
                self._open_findings(found.refused, origin)
            found, held = self._post_orders(found, entries, origin)
        except _Busy:
            inbox.release(self._sessions, event_id, self._clock())
            return EventStatus.RETRY
        except (ReconcileError, _NotYet) as error:
            return self._postpone(event_id, str(error))
        except Exception as error:  # noqa: BLE001 - one bad event never stops the others
            log.debug("unexpected error on event %s", event_id, exc_info=True)
            return self._postpone(event_id, f"internal error: {type(error).__name__}")
        if found.refused:
            return self._refused(event_id, found)
        posted = len(found.orders) > len(held)
        status = EventStatus.POSTED if posted else EventStatus.IGNORED
        inbox.settle(self._sessions, event_id, status, "; ".join([plan.note, *held]) or None)
        return status

    def _post_orders(
        self,
        found: EventOrders,
        entries: Mapping[str, ExpectedEntry],
        origin: str,
    ) -> tuple[EventOrders, list[str]]:
        """Post each order; return ``found`` with the orders Moesif holds elsewhere refused.

        Also returns a note for each order Moesif already holds where it belongs; one it holds
        on another subscription is an open finding at once, as a refusal of the rule would be.

        Raises:
            _Busy: another caller is posting an order at this moment.
            _NotYet: an order's outcome is not known yet, or it failed.
        """
        held: list[str] = []
        for order in found.orders:
            outcome = self._post(order, origin)
            if outcome.result is Result.BUSY:
                raise _Busy(order.transaction_id)
            if outcome.unknown or outcome.action == Action.POST_FAILED:
                raise _NotYet(f"{order.transaction_id}: {outcome.detail}")
            if outcome.result is Result.HELD:
                held.append(f"{order.transaction_id}: {outcome.detail}")
            if outcome.result is Result.MISAPPLIED and outcome.verdict is not None:
                misapplied = ((entries[order.transaction_id], outcome.verdict),)
                self._open_findings(misapplied, origin)
                found = replace(found, refused=found.refused + misapplied)
        return found, held

    def _open_findings(self, refused: Sequence[tuple[ExpectedEntry, Verdict]], origin: str) -> None:
        """Record each refused movement as an open finding now, as a run would."""
        found = dict(finding_of(entry, verdict, origin) for entry, verdict in refused)
        with self._sessions.begin() as session:
            open_at_once(session, found, self._clock())

    def _refused(self, event_id: str, found: EventOrders) -> EventStatus:
        """Settle an event with refused movements: ``unmapped`` when that is all they are."""
        if len(found.unmapped) == len(found.refused):
            status, note = EventStatus.UNMAPPED, "; ".join(found.unmapped)
        else:
            status = EventStatus.REFUSED
            note = "; ".join(
                f"{entry.transaction_id}: {verdict.category}: {verdict.reason}"
                for entry, verdict in found.refused
            )
        inbox.settle(self._sessions, event_id, status, note)
        log.warning("event %s: not posted, open finding: %s", event_id, note)
        return status

    def _postpone(self, event_id: str, reason: str) -> EventStatus:
        inbox.postpone(self._sessions, event_id, reason, self._clock())
        log.warning("event %s will be retried: %s", event_id, reason)
        return EventStatus.RETRY

    def _entries(self, plan: EventPlan) -> Iterator[ExpectedEntry]:
        client = self._client_of(plan.stripe_account)
        ids = list(plan.object_ids)
        if plan.refunds_of_charge:
            ids.extend(refund_ids(client, plan.refunds_of_charge))
        if plan.transactions_of:
            ids.extend(balance_transaction_ids(client, plan.transactions_of))
        yield from extract_by_ids(client, ids)

    def _client_of(self, stripe_account: str | None) -> stripe.StripeClient:
        """Return the Stripe client that reads the event's account (a Connect event's own)."""
        if stripe_account is None:
            return self._stripe
        if stripe_account not in self._connected:
            self._connected[stripe_account] = on_account(self._stripe, stripe_account)
        return self._connected[stripe_account]


class _NotYet(Exception):
    """A posting whose outcome is not confirmed yet; the event is tried again later."""


class _Busy(Exception):
    """Another caller is posting this entry right now; the event is tried again shortly."""
