"""One reconciliation pass: sync, extract, match, post, report; this module owns the transaction."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from reconcile import frames, matching, report, steps
from reconcile.clients import Clients
from reconcile.config import Settings
from reconcile.db.engine import describe, make_engine, upgrade_to_head
from reconcile.db.models import Run
from reconcile.db.postings import confirmed
from reconcile.db.runs import RunStatus
from reconcile.domain import Action
from reconcile.errors import DatabaseUnavailable, ExitCode, GuardrailTripped, ReconcileError
from reconcile.lock import run_lock
from reconcile.observability import Progress
from reconcile.posting import Order, Outcome, Poster, check_guardrails
from reconcile.rules.conclusion import conclude, to_review
from reconcile.rules.orders import after_sending, decide
from reconcile.subscriptions import SubscriptionDirectory
from reconcile.times import Window, to_iso

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    """What the caller asks of one run; ``since=None`` means from the watermark minus lookback."""

    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False
    companies: tuple[str, ...] = ()
    report_dir: Path | None = None
    trigger: str = "manual"


@dataclass(frozen=True)
class RunOutcome:
    """What one run did, for the terminal summary, logs, metrics and the exit code."""

    run_id: str
    exit_code: ExitCode
    window: Window
    started_at: datetime
    finished_at: datetime
    counts: Mapping[str, int] = field(default_factory=dict)
    totals: Mapping[str, str] = field(default_factory=dict)
    posted: int = 0
    post_failed: int = 0
    report_path: Path | None = None
    message: str = ""
    summary: str = ""

    @property
    def duration_seconds(self) -> float:
        """Return how long the run took."""
        return (self.finished_at - self.started_at).total_seconds()


def new_run_id(started_at: datetime) -> str:
    """Return a sortable, unique run id such as ``20261124T020000Z-3f9a1c``."""
    return f"{started_at.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


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
        sessions: steps.Sessions,
        started_at: datetime,
    ) -> None:
        self.settings, self.request, self.clients = settings, request, clients
        self.sessions, self.started_at = sessions, started_at
        self.run_id = new_run_id(started_at)
        self.report_dir = request.report_dir or settings.report_dir
        self.directory = SubscriptionDirectory(clients.moesif, clients.clock)

    def run(self) -> RunOutcome:
        request = self.request
        window = steps.window(
            self.sessions, request.since, request.until, self.started_at, self.settings.lookback
        )
        steps.check_report_dir(self.report_dir)
        steps.start(self.sessions, self._run_row(window))
        log.info(
            "run %s: %s to %s%s",
            self.run_id,
            to_iso(window.since),
            to_iso(window.until),
            " (dry run)" if request.dry_run else "",
        )
        try:
            return self._reconcile(window)
        except ReconcileError as error:
            steps.fail(self.sessions, self.run_id, error, self.clients.clock())
            raise

    def _run_row(self, window: Window) -> Run:
        return Run(
            id=self.run_id,
            since=window.since,
            until=window.until,
            dry_run=self.request.dry_run,
            companies=",".join(self.request.companies) or None,
            trigger=self.request.trigger,
            status=RunStatus.RUNNING,
            started_at=self.started_at,
        )

    def _reconcile(self, window: Window) -> RunOutcome:
        settings, companies, clock = self.settings, self.request.companies, self.clients.clock
        wide = window.widened(settings.match_window)
        now = clock()
        reach = Window(wide.since, min(wide.until, max(now, window.until)))
        pending_since = steps.extract_stripe(
            self.sessions, self.clients.stripe, reach, companies, run_id=self.run_id, now=clock()
        )
        # Up to now, not only to the window's end: rows posted for this window later (by an
        # earlier run, or a late webhook) carry the time they were posted.
        unreadable = steps.sync_moesif(
            self.sessions,
            self.clients.moesif,
            self.directory,
            Window(wide.since, max(now, wide.until)),
            settings,
            companies,
            run_id=self.run_id,
            clock=clock,
        )
        expected, ledger = steps.frames_of(
            self.sessions, self.clients.stripe, wide, companies, run_id=self.run_id, now=clock()
        )
        paid = frames.subscriptions_paid(frames.in_window(expected, window))
        findings = frames.typed_findings(
            matching.match(
                expected,
                ledger,
                window=window,
                match_window=settings.match_window,
                subscription_currency=steps.subscription_currencies(
                    self.sessions, self.directory, paid
                ),
            )
        )
        return self._post(window, findings, unreadable, pending_since)

    def _post(
        self,
        window: Window,
        findings: pd.DataFrame,
        unreadable: frozenset[str],
        pending_since: datetime | None,
    ) -> RunOutcome:
        index, missing = frames.missing(findings)
        with self.sessions() as session:
            earlier = confirmed(session, [finding.transaction_id for finding in missing])
        confirmed_by = {tid: posting.run_id for tid, posting in earlier.items()}
        decisions = [
            decide(m, unreadable=unreadable, confirmed_by=confirmed_by, run_id=self.run_id)
            for m in missing
        ]
        findings = frames.decided(findings, index, decisions)
        todo = pd.Index([i for i, d in zip(index, decisions, strict=True) if d.order is not None])
        orders = [d.order for d in decisions if d.order is not None]
        outcomes: list[Outcome] = []
        guardrail: GuardrailTripped | None = None
        if orders and not self.request.dry_run:
            try:
                check_guardrails(
                    orders,
                    max_postings=self.settings.max_postings,
                    max_total=self.settings.max_posting_total,
                )
            except GuardrailTripped as tripped:
                guardrail = tripped
                findings = frames.with_detail(findings, todo, f"not posted: {tripped}")
            else:
                findings, outcomes = self._send(findings, todo, orders)
        return self._finish(window, findings, outcomes, guardrail, pending_since)

    def _send(
        self, findings: pd.DataFrame, todo: pd.Index, orders: list[Order]
    ) -> tuple[pd.DataFrame, list[Outcome]]:
        clients = self.clients
        poster = Poster(
            self.sessions,
            clients.moesif,
            run_id=self.run_id,
            amount_unit=self.settings.moesif_amount_unit,
            clock=clients.clock,
        )
        progress = Progress("Postings", total=len(orders), unit="postings")
        outcomes: list[Outcome] = []
        try:
            for order in orders:
                outcomes.append(poster.post(order))
                progress.advance(1)
        except ReconcileError as error:
            failed = frames.decided(
                findings, todo, after_sending(outcomes, len(orders), str(error))
            )
            steps.save(self.sessions, failed, self.run_id, self.report_dir)
            raise
        progress.done()
        return frames.decided(findings, todo, after_sending(outcomes, len(orders))), outcomes

    def _finish(
        self,
        window: Window,
        findings: pd.DataFrame,
        outcomes: list[Outcome],
        guardrail: GuardrailTripped | None,
        pending_since: datetime | None,
    ) -> RunOutcome:
        path = steps.save(self.sessions, findings, self.run_id, self.report_dir)
        posted = sum(1 for outcome in outcomes if outcome.action == Action.POSTED)
        failed = sum(1 for outcome in outcomes if outcome.action == Action.POST_FAILED)
        review = to_review(frames.actions(findings))
        conclusion = conclude(
            review=review,
            unknown=sum(1 for outcome in outcomes if outcome.unknown),
            post_failed=failed,
            guardrail=guardrail is not None,
            partial=self.request.dry_run or bool(self.request.companies),
            window_until=window.until,
            started_at=self.started_at,
        )
        finished_at = self.clients.clock()
        message = str(guardrail) if guardrail is not None else ""
        steps.finish(
            self.sessions,
            self.run_id,
            conclusion,
            finished_at=finished_at,
            review=review,
            posted=posted,
            post_failed=failed,
            error=message or None,
            pending_since=pending_since,
        )
        return RunOutcome(
            run_id=self.run_id,
            exit_code=conclusion.exit_code,
            window=window,
            started_at=self.started_at,
            finished_at=finished_at,
            counts=frames.counts(findings),
            totals=frames.totals(findings),
            posted=posted,
            post_failed=failed,
            report_path=path,
            message=message,
            summary=report.summary(
                findings,
                posted=posted,
                post_failed=failed,
                report_path=path,
                window=window,
                dry_run=self.request.dry_run,
            ),
        )
