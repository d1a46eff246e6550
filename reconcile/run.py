"""One reconciliation pass, step by step from its request to its outcome; it owns the transaction.

Each step takes the values the steps before it returned and returns its own: begin, read Stripe,
read Moesif, load both sides, check Moesif's running balances, match, post, settle the findings'
lifecycle, end, measure the live path's miss rate.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from reconcile import frames, live_path
from reconcile.clients import Clients
from reconcile.config import Settings
from reconcile.db.engine import describe, make_engine, upgrade_to_head
from reconcile.errors import DatabaseUnavailable, ReconcileError
from reconcile.lock import run_lock
from reconcile.request import RunOutcome, RunRequest, new_run_id
from reconcile.steps import (
    Sessions,
    balance_chains,
    begin,
    comparing,
    control_totals,
    ending,
    lifecycle,
    sending,
    snapshot,
)
from reconcile.subscriptions import SubscriptionDirectory

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
        with run_lock(engine, lock_name(request.stripe_account)):
            sessions = sessionmaker(engine, expire_on_commit=False)
            return _run(sessions, settings, request, clients, started_at)
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(f"snapshot database failed: {describe(error)}") from None
    finally:
        engine.dispose()


def lock_name(stripe_account: str | None) -> str:
    """Return the name of the run lock: one for the key's own account, one per connected one."""
    return "reconcile" if stripe_account is None else f"account:{stripe_account}"


def _run(
    sessions: Sessions,
    settings: Settings,
    request: RunRequest,
    clients: Clients,
    started_at: datetime,
) -> RunOutcome:
    """Begin the run and reconcile; a run that fails once begun is recorded as failed."""
    run = begin.begin(sessions, settings, request, started_at, clients.clock)
    try:
        return _reconcile(sessions, settings, request, clients, run)
    except ReconcileError as error:
        begin.fail(sessions, run.run_id, error, clients.clock(), settings.redactor())
        raise


def _reconcile(
    sessions: Sessions,
    settings: Settings,
    request: RunRequest,
    clients: Clients,
    run: begin.Begun,
) -> RunOutcome:
    """Read both sides, compare them, post what is missing, settle the findings, end the run."""
    clock, companies, run_id = clients.clock, request.companies, run.run_id
    directory = SubscriptionDirectory(
        clients.moesif, clock, amount_unit=settings.moesif_amount_unit
    )
    stripe = snapshot.read_stripe(sessions, clients.stripe, run, companies, now=clock())
    companies = snapshot.account_scope(sessions, run, companies)
    moesif = snapshot.read_moesif(
        sessions, clients.moesif, directory, settings, run, companies, clock
    )
    loaded = snapshot.load(
        sessions, clients.stripe, directory, run, companies, moesif.rechecked, now=clock()
    )
    chained = balance_chains.check(sessions, run, companies, settings.moesif_amount_unit, directory)
    compared = comparing.compare(sessions, loaded, stripe, moesif, run.spans, settings.match_window)
    totals = control_totals.check(
        clients.stripe,
        settings,
        run.spans.stripe,
        stripe.paged,
        sleep=clients.sleep,
        earlier=lifecycle.subject_ids(moesif.rechecked)[0],
    )
    posted = sending.post_missing(
        sessions,
        clients,
        settings,
        frames.joined(frames.joined(compared.findings, chained.findings), totals.findings),
        unreadable=compared.blocked,
        run_id=run_id,
        report_dir=run.report_dir,
        dry_run=request.dry_run,
    )
    settled = lifecycle.settle(
        sessions,
        lifecycle.with_ids(frames.redacted(posted.findings, settings.redactor())),
        moesif.rechecked,
        run_id=run_id,
        now=clock(),
        dry_run=request.dry_run,
        present=loaded.present | totals.compared,
    )
    done = ending.end(
        sessions, settings, request, run, settled, posted, stripe.pending_since, clock
    )
    done = replace(done, summary=f"{done.summary}\n{totals.note}") if totals.note else done
    with sessions() as session:
        return replace(done, miss_rate=live_path.measure(session, clock()))
