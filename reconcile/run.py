"""One reconciliation pass: sync, extract, match, post, report; this module owns the transaction."""

from __future__ import annotations

import logging
from datetime import datetime

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from reconcile import frames, matching
from reconcile.clients import Clients
from reconcile.config import Settings
from reconcile.db.engine import describe, make_engine, upgrade_to_head
from reconcile.domain import Unreadable
from reconcile.errors import DatabaseUnavailable, ReconcileError
from reconcile.ledger_sync import SyncResult
from reconcile.lock import run_lock
from reconcile.request import RunOutcome, RunRequest, new_run_id
from reconcile.rules.conclusion import Tally, conclude, tally, to_review, unanswered
from reconcile.rules.rereads import rereads
from reconcile.steps import Sessions, begin, ending, lifecycle, sending, snapshot
from reconcile.subscriptions import SubscriptionDirectory
from reconcile.times import Window
from reconcile.unreadable import blocked_transaction_ids, unreadable_findings

log = logging.getLogger(__name__)

__all__ = ["RunOutcome", "RunRequest", "execute", "new_run_id"]


def execute(
    settings: Settings, request: RunRequest, clients: Clients, *, now: datetime | None = None
) -> RunOutcome:
    """Run one reconciliation pass through ``clients`` and return what it did.

    Raises:
        ReconcileError: each subclass carries the exit code the process should end with.
    """
    started_at = now or clients.clock()
    engine = make_engine(settings.database_url)
    try:
        upgrade_to_head(engine)
        with run_lock(engine):
            sessions = sessionmaker(engine, expire_on_commit=False)
            return _Pass(settings, request, clients, sessions, started_at).run()
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(f"snapshot database failed: {describe(error)}") from None
    finally:
        engine.dispose()


class _Pass:
    """One run's sequence of steps, sharing its settings, clients and session factory."""

    def __init__(
        self,
        settings: Settings,
        request: RunRequest,
        clients: Clients,
        sessions: Sessions,
        started_at: datetime,
    ) -> None:
        self.settings, self.request, self.clients = settings, request, clients
        self.sessions, self.started_at = sessions, started_at
        self.run_id = new_run_id(started_at)
        self.report_dir = request.report_dir or settings.report_dir
        self.directory = SubscriptionDirectory(clients.moesif, clients.clock)
        self.before: dict[str, lifecycle.Subject] = {}
        self.present: frozenset[str] = frozenset()

    def run(self) -> RunOutcome:
        request = self.request
        window = begin.window(
            self.sessions, request.since, request.until, self.started_at, self.settings.lookback
        )
        begin.check_report_dir(self.report_dir)
        begin.start(self.sessions, self.run_id, window, request, self.started_at)
        try:
            return self._reconcile(window)
        except ReconcileError as error:
            begin.fail(
                self.sessions, self.run_id, error, self.clients.clock(), self.settings.redactor()
            )
            raise

    def _reconcile(self, window: Window) -> RunOutcome:
        settings, companies, clock = self.settings, self.request.companies, self.clients.clock
        wide = window.widened(settings.match_window)
        now = clock()
        reach = Window(wide.since, min(wide.until, max(now, window.until)))
        unreadable: list[Unreadable] = []
        pending_since = snapshot.extract_stripe(
            self.sessions,
            self.clients.stripe,
            reach,
            companies,
            run_id=self.run_id,
            now=clock(),
            on_unreadable=unreadable.append,
        )
        # Up to now, not only to the window's end: rows posted for this window later (by an
        # earlier run, or a late webhook) carry the time they were posted.
        synced = snapshot.sync_moesif(
            self.sessions,
            self.clients.moesif,
            self.directory,
            Window(wide.since, max(now, wide.until)),
            settings,
            companies,
            run_id=self.run_id,
            clock=clock,
        )
        self.before = lifecycle.open_before(self.sessions, companies, clock())
        again = snapshot.reread_moesif(
            self.sessions,
            self.clients.moesif,
            self.directory,
            rereads(
                lifecycle.places(self.sessions, self.before),
                settings.match_window,
                Window(wide.since, max(now, wide.until)),
                companies,
            ),
            settings,
            clock=clock,
        )
        unreadable.extend(_distinct([synced, *again]))
        blocked_rows = frozenset().union(*(result.unreadable_ids for result in [synced, *again]))
        transactions, rows = lifecycle.subject_ids(self.before)
        expected, ledger = snapshot.frames_of(
            self.sessions,
            self.clients.stripe,
            wide,
            companies,
            run_id=self.run_id,
            now=clock(),
            on_unreadable=unreadable.append,
            recheck=(transactions, rows),
        )
        self.present = frozenset(expected["transaction_id"]) | frozenset(ledger["moesif_id"])
        for company in frames.unknown_companies(companies, expected, ledger):
            log.warning("--company %s matches nothing in Stripe or Moesif in this window", company)
        paid = snapshot.subscriptions_paid_into(
            self.sessions,
            self.directory,
            frames.subscriptions_paid(frames.in_window(expected, window)),
        )
        matched = frames.typed_findings(
            matching.match(
                expected,
                ledger,
                window=window,
                match_window=settings.match_window,
                subscription_currency=paid.currencies,
                subscription_company=paid.companies,
                recheck=transactions | rows,
            )
        )
        matched = snapshot.naming_dropped_rows(self.sessions, matched)
        findings = frames.joined(matched, frames.typed_findings(unreadable_findings(unreadable)))
        blocked = blocked_rows | blocked_transaction_ids(unreadable)
        return self._post(window, findings, blocked, pending_since)

    def _post(
        self,
        window: Window,
        findings: pd.DataFrame,
        unreadable: frozenset[str],
        pending_since: datetime | None,
    ) -> RunOutcome:
        findings, outcomes, guardrail = sending.post_missing(
            self.sessions,
            self.clients,
            self.settings,
            findings,
            unreadable=unreadable,
            run_id=self.run_id,
            report_dir=self.report_dir,
            dry_run=self.request.dry_run,
        )
        return self._finish(window, findings, tally(outcomes), guardrail, pending_since)

    def _finish(
        self,
        window: Window,
        findings: pd.DataFrame,
        counted: Tally,
        guardrail: str,
        pending_since: datetime | None,
    ) -> RunOutcome:
        """Save and record the run; ``guardrail`` says why nothing was posted, empty if it was.

        Findings an operator ignored do not count for review; open ones of earlier runs do, and
        so do resolved ones whose drift is still there (reopened).
        """
        findings = lifecycle.settle(
            self.sessions,
            lifecycle.with_ids(frames.redacted(findings, self.settings.redactor().text)),
            self.before,
            run_id=self.run_id,
            now=self.clients.clock(),
            dry_run=self.request.dry_run,
            present=self.present,
        )
        path = ending.save(
            self.sessions, findings, self.run_id, self.report_dir, self.settings.redactor()
        )
        review = to_review(frames.actions(findings))
        conclusion = conclude(
            review=review,
            tally=counted,
            guardrail=bool(guardrail),
            partial=self.request.dry_run or bool(self.request.companies),
            window_until=window.until,
            started_at=self.started_at,
        )
        return ending.finish(
            self.sessions,
            ending.outcome(
                self.run_id,
                findings,
                window,
                self.started_at,
                self.clients.clock(),
                conclusion,
                counted,
                path,
                guardrail or unanswered(counted),
                dry_run=self.request.dry_run,
            ),
            conclusion,
            review,
            pending_since,
        )


def _distinct(results: list[SyncResult]) -> list[Unreadable]:
    """Return the unreadable Moesif rows of several reads, each once (reads may overlap)."""
    return list({item.object_id: item for result in results for item in result.unreadable}.values())
