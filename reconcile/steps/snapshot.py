"""Snapshotting Stripe and Moesif, and loading both sides as the matcher's frames."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import stripe
from sqlalchemy.orm import Session

from reconcile import frames
from reconcile.config import Settings
from reconcile.db.expected import expected_by_ids, expected_frame, store_expected
from reconcile.db.findings import remembered_pairs
from reconcile.db.ledger import gone_rows_naming, ledger_by_ids, ledger_frame
from reconcile.db.postings import settle_from_snapshot
from reconcile.db.runs import record_ledger_rows, record_stripe_entries
from reconcile.domain import Unreadable, is_stripe_id
from reconcile.ledger_sync import SyncResult, sync_ledger
from reconcile.moesif.client import MoesifClient
from reconcile.observability import Progress
from reconcile.rules.known_ids import known_id, needs_memory
from reconcile.rules.rereads import Reread
from reconcile.steps import Sessions
from reconcile.stripe.extract import ExtractProgress, extract, extract_by_ids
from reconcile.subscriptions import SubscriptionDirectory
from reconcile.times import Window

log = logging.getLogger(__name__)


def extract_stripe(
    sessions: Sessions,
    client: stripe.StripeClient,
    reach: Window,
    companies: Sequence[str],
    *,
    run_id: str,
    now: datetime,
    on_unreadable: Callable[[Unreadable], None],
) -> datetime | None:
    """Snapshot Stripe's movements of ``reach``; return the oldest one seen still pending.

    Each Stripe object that cannot be interpreted safely is handed to ``on_unreadable``.
    """
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
                on_unreadable=on_unreadable,
            ),
            run_id=run_id,
            now=now,
        )
        record_stripe_entries(session, run_id, stored)
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
) -> SyncResult:
    """Snapshot Moesif's ledger of ``reach`` and settle postings it confirms.

    Returns what the sync did, with the rows Moesif holds but that could not be read.
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
        record_ledger_rows(session, run_id, result.rows_seen)
        settled = settle_from_snapshot(session, clock())
    progress.done()
    if settled:
        log.info(
            "%d unfinished posting(s) found in the Moesif ledger and confirmed: %s",
            len(settled),
            ", ".join(settled),
        )
    return result


def reread_moesif(
    sessions: Sessions,
    moesif: MoesifClient,
    directory: SubscriptionDirectory,
    reads: Sequence[Reread],
    settings: Settings,
    *,
    clock: Callable[[], datetime],
) -> list[SyncResult]:
    """Read Moesif again where the findings a run re-checks lie, and refresh the snapshot.

    Each read is the sync of one company (all when ``None``) over one narrow window, wherever it
    lies in time: a row corrected or removed in Moesif there is seen as it is now (a row no
    longer returned is marked gone by the sync's own rule), so its finding settles at this run.
    """
    if reads:
        log.info("re-reading Moesif around %d open or resolved finding subject(s)", len(reads))
    results = []
    for read in reads:
        with sessions.begin() as session:

            def currency_for(subscription_id: str, session: Session = session) -> str | None:
                return directory.currency(session, subscription_id)

            results.append(
                sync_ledger(
                    session,
                    moesif,
                    read.window.since,
                    read.window.until,
                    amount_unit=settings.moesif_amount_unit,
                    companies=() if read.company_id is None else (read.company_id,),
                    now=clock(),
                    currency_for=currency_for,
                )
            )
    return results


@dataclass(frozen=True)
class PaidInto:
    """What Moesif holds for the subscriptions a run's movements pay into."""

    currencies: dict[str, str | None]
    """Subscription id to its currency, ``None`` when Moesif lacks the subscription; one
    Moesif names no currency for is left out (only its currency check is skipped)."""
    companies: dict[str, str | None]
    """Subscription id to the company Moesif files it under."""


def subscriptions_paid_into(
    sessions: Sessions, directory: SubscriptionDirectory, paid: Sequence[tuple[str, str]]
) -> PaidInto:
    """Return the currency and company of each subscription paid into."""
    found = PaidInto({}, {})
    with sessions.begin() as session:
        for subscription_id, currency in paid:
            known = directory.lookup(session, subscription_id, expect=currency)
            if known is None:
                found.currencies[subscription_id] = None
                continue
            if known.currency:
                found.currencies[subscription_id] = known.currency
            found.companies[subscription_id] = known.company_id
    return found


def frames_of(
    sessions: Sessions,
    client: stripe.StripeClient,
    wide: Window,
    companies: Sequence[str],
    *,
    run_id: str,
    now: datetime,
    on_unreadable: Callable[[Unreadable], None],
    recheck: tuple[Collection[str], Collection[str]] = ((), ()),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load the expected entries and ledger rows of the widened window.

    Ledger rows that name a Stripe movement from outside it (an earlier run's posting, a late
    webhook) bring that movement's expected entry along, so they match it: from the snapshot
    when an earlier run read it, else fetched from Stripe by id (an object fetched that cannot
    be interpreted safely is handed to ``on_unreadable``). ``recheck`` names the transaction
    ids and Moesif row ids of open findings from earlier runs: they are loaded wherever they
    lie, so every open finding is compared again.
    """
    transactions, rows = recheck
    with sessions() as session:
        expected = expected_frame(session, wide.since, wide.until, companies)
        outside = set(transactions) - set(expected["transaction_id"])
        if outside:
            expected = frames.joined(expected, expected_by_ids(session, outside))
        ledger = ledger_frame(session, wide.since, wide.until, expected["transaction_id"].tolist())
        if rows:
            ledger = frames.joined(ledger, ledger_by_ids(session, rows))
            ledger = ledger.drop_duplicates(subset="moesif_id").reset_index(drop=True)
    ledger = with_known_ids(sessions, frames.of_companies(ledger, companies))
    strays = frames.stripe_ids(ledger) - set(expected["transaction_id"])
    if not strays:
        return expected, ledger
    with sessions.begin() as session:
        unknown = strays - set(expected_by_ids(session, strays)["transaction_id"])
        if unknown:
            fetched = extract_by_ids(
                client, unknown, companies=companies, on_unreadable=on_unreadable
            )
            store_expected(session, fetched, run_id=run_id, now=now)
        older = expected_by_ids(session, strays)
    return frames.joined(expected, older), ledger


def naming_dropped_rows(sessions: Sessions, findings: pd.DataFrame) -> pd.DataFrame:
    """Return the findings with each missing movement's detail naming the gone row that held it.

    A movement whose ledger row Moesif dropped (marked gone only after a targeted read lacked
    it too) is posted again; its finding says which row that was.
    """
    _, missing = frames.missing(findings)
    if not missing:
        return findings
    with sessions() as session:
        dropped = gone_rows_naming(session, [finding.transaction_id for finding in missing])
    return frames.naming_dropped(findings, dropped)


def with_known_ids(sessions: Sessions, ledger: pd.DataFrame) -> pd.DataFrame:
    """Give rows without a Stripe id the one they are known by (see ``rules.known_ids``)."""
    cells = frames.ledger_cells(ledger, "transaction_id", "description", "moesif_id")
    if all(is_stripe_id(tid) for tid, _, _ in cells):
        return ledger
    asking = [moesif_id for tid, text, moesif_id in cells if needs_memory(tid, text)]
    with sessions() as session:
        pairs = remembered_pairs(session, asking) if asking else {}
    return frames.with_ids(ledger, [known_id(tid, text, mid, pairs) for tid, text, mid in cells])
