"""The steps of a run that read and write the snapshot; each carries out a rule's answer."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import stripe
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconcile import frames, report
from reconcile.clients import Clients
from reconcile.config import Settings
from reconcile.db import runs
from reconcile.db.expected import expected_by_ids, expected_frame, store_expected
from reconcile.db.findings import remembered_pairs, store_findings
from reconcile.db.ledger import ledger_frame
from reconcile.db.models import Run
from reconcile.db.postings import confirmed, settle_from_snapshot
from reconcile.domain import is_stripe_id
from reconcile.errors import ConfigError, ReconcileError
from reconcile.ledger_sync import sync_ledger
from reconcile.moesif.client import MoesifClient
from reconcile.observability import Progress
from reconcile.posting import Order, Outcome, Poster
from reconcile.request import RunOutcome, RunRequest
from reconcile.rules.conclusion import Conclusion, Tally
from reconcile.rules.known_ids import known_id, needs_memory
from reconcile.rules.orders import Decision, Missing, decide
from reconcile.rules.window import run_window
from reconcile.stripe.extract import ExtractProgress, extract, extract_by_ids
from reconcile.subscriptions import SubscriptionDirectory
from reconcile.times import Window, to_iso

log = logging.getLogger(__name__)

Sessions = sessionmaker[Session]


def check_report_dir(report_dir: Path) -> None:
    """Refuse to start, before anything is posted, when the report cannot be written."""
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=report_dir, prefix=".probe-"):
            pass
    except OSError as error:
        raise ConfigError(
            f"the report directory {report_dir} cannot be written: {error.strerror or error}"
        ) from None


def window(
    sessions: Sessions,
    since: datetime | None,
    until: datetime | None,
    started_at: datetime,
    lookback: timedelta,
) -> Window:
    """Return the run's window, from the request or from the last run's watermark."""
    with sessions() as session:
        watermark = runs.last_watermark(session) if since is None else None
        pending = runs.last_pending_since(session) if since is None else None
    chosen = run_window(
        since=since,
        until=until,
        started_at=started_at,
        watermark=watermark,
        lookback=lookback,
        pending_since=pending,
    )
    if since is None and watermark is not None and chosen.since < watermark - lookback:
        log.info(
            "reading from %s: a Stripe payment or refund seen then was not final yet",
            to_iso(chosen.since),
        )
    return chosen


def start(
    sessions: Sessions, run_id: str, window: Window, request: RunRequest, started_at: datetime
) -> None:
    """Mark runs that died mid-run as crashed, then record this one as running."""
    with sessions.begin() as session:
        crashed = runs.mark_crashed(session, started_at)
        if crashed:
            log.warning("%d earlier run(s) ended mid-run; their postings are checked", crashed)
        session.add(
            Run(
                id=run_id,
                since=window.since,
                until=window.until,
                dry_run=request.dry_run,
                companies=",".join(request.companies) or None,
                trigger=request.trigger,
                status=runs.RunStatus.RUNNING,
                started_at=started_at,
            )
        )
    log.info(
        "run %s: %s to %s%s",
        run_id,
        to_iso(window.since),
        to_iso(window.until),
        " (dry run)" if request.dry_run else "",
    )


def extract_stripe(
    sessions: Sessions,
    client: stripe.StripeClient,
    reach: Window,
    companies: Sequence[str],
    *,
    run_id: str,
    now: datetime,
) -> datetime | None:
    """Snapshot Stripe's movements of ``reach``; return the oldest one seen still pending."""
    progress = Progress("Stripe", unit="days read")
    oldest: list[datetime] = []

    def advance(step: ExtractProgress) -> None:
        progress.total = step.slices_total
        progress.advance(1)

    def pending(created: datetime) -> None:
        oldest[:] = [min([created, *oldest])]

    with sessions.begin() as session:
        stored = store_expected(
            session,
            extract(
                client,
                reach.since,
                reach.until,
                companies=companies,
                progress=advance,
                on_pending=pending,
            ),
            run_id=run_id,
            now=now,
        )
        session.get_one(Run, run_id).stripe_entries = stored
    progress.done()
    return oldest[0] if oldest else None


def sync_moesif(
    sessions: Sessions,
    moesif: MoesifClient,
    directory: SubscriptionDirectory,
    reach: Window,
    settings: Settings,
    companies: Sequence[str],
    *,
    run_id: str,
    clock: Callable[[], datetime],
) -> frozenset[str]:
    """Snapshot Moesif's ledger of ``reach`` and settle postings it confirms.

    Returns the transaction ids of rows Moesif holds but that could not be read.
    """
    progress = Progress("Moesif ledger", unit="rows")
    with sessions.begin() as session:
        result = sync_ledger(
            session,
            moesif,
            reach.since,
            reach.until,
            amount_unit=settings.moesif_amount_unit,
            companies=companies,
            now=clock(),
            progress=progress.advance,
            currency_for=lambda subscription_id: directory.currency(session, subscription_id),
        )
        session.get_one(Run, run_id).ledger_rows = result.rows_seen
        settled = settle_from_snapshot(session, clock())
    progress.done()
    if settled:
        log.info(
            "%d unfinished posting(s) found in the Moesif ledger and confirmed: %s",
            len(settled),
            ", ".join(settled),
        )
    return result.unreadable_ids


def subscription_currencies(
    sessions: Sessions, directory: SubscriptionDirectory, paid: Sequence[tuple[str, str]]
) -> dict[str, str | None]:
    """Return the currency of each subscription paid into, ``None`` when Moesif lacks it.

    A subscription Moesif names no currency for is left out: only its currency check is skipped.
    """
    currencies: dict[str, str | None] = {}
    with sessions.begin() as session:
        for subscription_id, currency in paid:
            known = directory.lookup(session, subscription_id, expect=currency)
            if known is None:
                currencies[subscription_id] = None
            elif known.currency:
                currencies[subscription_id] = known.currency
    return currencies


def frames_of(
    sessions: Sessions,
    client: stripe.StripeClient,
    wide: Window,
    companies: Sequence[str],
    *,
    run_id: str,
    now: datetime,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load the expected entries and ledger rows of the widened window.

    Ledger rows that name a Stripe movement from outside it (an earlier run's posting, a late
    webhook) bring that movement's expected entry along, so they match it: from the snapshot
    when an earlier run read it, else fetched from Stripe by id.
    """
    with sessions() as session:
        expected = expected_frame(session, wide.since, wide.until, companies)
        ledger = ledger_frame(session, wide.since, wide.until, expected["transaction_id"].tolist())
    ledger = with_known_ids(sessions, frames.of_companies(ledger, companies))
    strays = frames.stripe_ids(ledger) - set(expected["transaction_id"])
    if not strays:
        return expected, ledger
    with sessions.begin() as session:
        unknown = strays - set(expected_by_ids(session, strays)["transaction_id"])
        if unknown:
            fetched = extract_by_ids(client, unknown, companies=companies)
            store_expected(session, fetched, run_id=run_id, now=now)
        older = expected_by_ids(session, strays)
    return frames.joined(expected, older), ledger


def with_known_ids(sessions: Sessions, ledger: pd.DataFrame) -> pd.DataFrame:
    """Give rows without a Stripe id the one they are known by (see ``rules.known_ids``)."""
    cells = frames.ledger_cells(ledger, "transaction_id", "description", "moesif_id")
    if all(is_stripe_id(tid) for tid, _, _ in cells):
        return ledger
    asking = [moesif_id for tid, text, moesif_id in cells if needs_memory(tid, text)]
    with sessions() as session:
        pairs = remembered_pairs(session, asking) if asking else {}
    return frames.with_ids(ledger, [known_id(tid, text, mid, pairs) for tid, text, mid in cells])


def save(sessions: Sessions, findings: pd.DataFrame, run_id: str, report_dir: Path) -> Path:
    """Write the report and store the findings of the run; return the report's path."""
    path = report.write_report(findings, run_id, report_dir)
    with sessions.begin() as session:
        store_findings(session, run_id, findings)
        row = session.get_one(Run, run_id)
        row.report_path = str(path)
        row.findings = len(findings)
    return path


def decisions(
    sessions: Sessions, missing: Sequence[Missing], unreadable: frozenset[str], run_id: str
) -> list[Decision]:
    """Decide each missing movement (see ``rules.orders``), knowing what earlier runs confirmed."""
    with sessions() as session:
        earlier = confirmed(session, [finding.transaction_id for finding in missing])
    confirmed_by = {tid: posting.run_id for tid, posting in earlier.items()}
    return [
        decide(finding, unreadable=unreadable, confirmed_by=confirmed_by, run_id=run_id)
        for finding in missing
    ]


def send(
    sessions: Sessions,
    clients: Clients,
    settings: Settings,
    orders: Sequence[Order],
    outcomes: list[Outcome],
    run_id: str,
) -> None:
    """Post the orders exactly once, appending each outcome to ``outcomes`` as it comes.

    Raises:
        ReconcileError: sending had to stop; ``outcomes`` holds what was sent before.
    """
    poster = Poster(
        sessions,
        clients.moesif,
        run_id=run_id,
        amount_unit=settings.moesif_amount_unit,
        clock=clients.clock,
    )
    progress = Progress("Postings", total=len(orders), unit="postings")
    for order in orders:
        outcomes.append(poster.post(order))
        progress.advance(1)
    progress.done()


def finish(
    sessions: Sessions,
    done: RunOutcome,
    conclusion: Conclusion,
    review: int,
    pending_since: datetime | None,
) -> RunOutcome:
    """Record how the run concluded, and return what it did."""
    with sessions.begin() as session:
        row = session.get_one(Run, done.run_id)
        row.status = conclusion.status
        row.exit_code = int(conclusion.exit_code)
        row.finished_at = done.finished_at
        row.flagged = review
        row.posted = done.posted
        row.post_failed = done.post_failed
        row.error = done.message or None
        row.pending_since = pending_since
        if conclusion.watermark is not None:
            row.watermark = conclusion.watermark
    return done


def fail(sessions: Sessions, run_id: str, error: ReconcileError, finished_at: datetime) -> None:
    """Record that the run failed; a database that fails now is only logged."""
    try:
        with sessions.begin() as session:
            row = session.get(Run, run_id)
            if row is None:
                return
            row.status = runs.RunStatus.FAILED
            row.exit_code = int(error.exit_code)
            row.finished_at = finished_at
            row.error = str(error)
    except SQLAlchemyError:
        log.exception("could not record the failure of run %s", run_id)


def outcome(
    run_id: str,
    findings: pd.DataFrame,
    window: Window,
    started_at: datetime,
    finished_at: datetime,
    conclusion: Conclusion,
    counted: Tally,
    report_path: Path,
    message: str,
    *,
    dry_run: bool,
) -> RunOutcome:
    """Return what the run did, with its terminal summary."""
    return RunOutcome(
        run_id=run_id,
        exit_code=conclusion.exit_code,
        window=window,
        started_at=started_at,
        finished_at=finished_at,
        counts=frames.counts(findings),
        totals=frames.totals(findings),
        posted=counted.posted,
        post_failed=counted.post_failed,
        report_path=report_path,
        message=message,
        summary=report.summary(
            findings,
            posted=counted.posted,
            post_failed=counted.post_failed,
            report_path=report_path,
            window=window,
            dry_run=dry_run,
        ),
    )
