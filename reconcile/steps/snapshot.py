"""Reading Stripe and Moesif into the snapshot, and loading both sides as the matcher's frames."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import stripe
from sqlalchemy.orm import Session

from reconcile import frames
from reconcile.config import Settings
from reconcile.db.expected import account_companies, store_expected
from reconcile.db.expected_frames import expected_by_ids, expected_frame
from reconcile.db.findings import remembered_pairs
from reconcile.db.ledger import ledger_by_ids, ledger_reading
from reconcile.db.postings import settle_from_snapshot
from reconcile.db.runs import record_ledger_rows, record_stripe_entries
from reconcile.domain.ids import OWN_POSTING_HEAD
from reconcile.domain.times import Window
from reconcile.domain.values import Unreadable
from reconcile.frames import Present
from reconcile.ledger_sync import SyncResult, sync_ledger
from reconcile.moesif.client import MoesifClient
from reconcile.observability import Progress
from reconcile.rules.correction import correction_id
from reconcile.rules.known_ids import known_id, needs_memory
from reconcile.rules.rereads import Reread, rereads
from reconcile.steps import Sessions, lifecycle
from reconcile.steps.begin import Begun
from reconcile.stripe.counterparts import Paged
from reconcile.stripe.extract import ExtractProgress, extract, extract_by_ids
from reconcile.subscriptions import SubscriptionDirectory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StripeRead:
    """What reading Stripe told besides the snapshot it stored."""

    pending_since: datetime | None
    """The oldest top-up or refund seen still pending, if any."""
    unreadable: tuple[Unreadable, ...] = ()
    """The Stripe objects that could not be interpreted safely."""
    paged: tuple[Paged, ...] = ()
    """The balance transactions paged and the credit's objects read, for the control totals."""


def read_stripe(
    sessions: Sessions,
    client: stripe.StripeClient,
    run: Begun,
    companies: Sequence[str],
    *,
    now: datetime,
) -> StripeRead:
    """Snapshot Stripe's movements of the run's Stripe span; return what it told besides."""
    spans, run_id = run.spans, run.run_id
    progress = Progress("Stripe", unit="days read")
    pending: list[datetime] = []
    unreadable: list[Unreadable] = []
    paged: list[Paged] = []

    def advance(step: ExtractProgress) -> None:
        progress.total = step.slices_total
        progress.advance(1)

    with sessions.begin() as session:
        stored = store_expected(
            session,
            extract(
                client,
                spans.stripe.since,
                spans.stripe.until,
                companies=companies,
                progress=advance,
                on_pending=pending.append,
                on_unreadable=unreadable.append,
                on_paged=paged.append,
            ),
            run_id=run_id,
            now=now,
            stripe_account=run.stripe_account,
        )
        record_stripe_entries(session, run_id, stored)
    progress.done()
    return StripeRead(min(pending, default=None), tuple(unreadable), tuple(paged))


@dataclass(frozen=True)
class MoesifRead:
    """What reading Moesif told besides the snapshot it stored."""

    rechecked: Mapping[str, lifecycle.Subject]
    """The findings of earlier runs this run compares again, by id (see
    :func:`reconcile.steps.lifecycle.open_before`)."""
    unreadable: tuple[Unreadable, ...] = ()
    """The ledger rows Moesif holds that could not be read, each once."""
    blocked: frozenset[str] = frozenset()
    """Transaction ids named by those rows: Moesif may hold these, so they are never posted."""


def read_moesif(
    sessions: Sessions,
    moesif: MoesifClient,
    directory: SubscriptionDirectory,
    settings: Settings,
    run: Begun,
    companies: Sequence[str],
    clock: Callable[[], datetime],
) -> MoesifRead:
    """Snapshot Moesif's ledger of the run's Moesif span, then again around re-checked findings.

    The findings re-checked are those of earlier runs still open or awaiting this run's check;
    each is compared fresh, so Moesif is read again wherever its subject lies.
    """
    spans = run.spans
    synced = sync_moesif(
        sessions,
        moesif,
        directory,
        spans.moesif,
        settings,
        companies,
        run_id=run.run_id,
        clock=clock,
    )
    rechecked = lifecycle.open_before(sessions, companies, clock(), run.stripe_account)
    reads = rereads(
        lifecycle.places(sessions, rechecked), settings.match_window, spans.moesif, companies
    )
    results = [synced, *reread_moesif(sessions, moesif, directory, reads, settings, clock=clock)]
    return MoesifRead(
        rechecked,
        _distinct(results),
        frozenset().union(*(result.unreadable_ids for result in results)),
    )


def _distinct(results: Sequence[SyncResult]) -> tuple[Unreadable, ...]:
    """Return the unreadable Moesif rows of several reads, each once (reads may overlap)."""
    return tuple(
        {item.object_id: item for result in results for item in result.unreadable}.values()
    )


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
        for subscription_id, known in directory.lookup_all(session, paid).items():
            if known is None:
                found.currencies[subscription_id] = None
                continue
            if known.currency:
                found.currencies[subscription_id] = known.currency
            found.companies[subscription_id] = known.company_id
    return found


@dataclass(frozen=True)
class Frames:
    """Both sides as the matcher's frames, and the Stripe objects fetched that were unreadable."""

    expected: pd.DataFrame
    ledger: pd.DataFrame
    unreadable: tuple[Unreadable, ...] = ()


def frames_of(
    sessions: Sessions,
    client: stripe.StripeClient,
    wide: Window,
    companies: Sequence[str],
    *,
    run_id: str,
    now: datetime,
    recheck: tuple[Collection[str], Collection[str]] = ((), ()),
    corrections: Collection[str] = (),
    stripe_account: str | None = None,
) -> Frames:
    """Load the expected entries and ledger rows of the widened window.

    Ledger rows that name a Stripe movement from outside it (an earlier run's posting, a late
    webhook) bring that movement's expected entry along, so they match it: from the snapshot
    when an earlier run read it, else fetched from Stripe by id (an object fetched that cannot
    be interpreted safely is returned as unreadable). ``recheck`` names the transaction ids
    and Moesif row ids of open findings from earlier runs: they are loaded wherever they lie,
    so every open finding is compared again; ``corrections`` names the transaction ids of
    their corrections (``corr_F-…``), loaded wherever they lie too. ``stripe_account``: the
    connected account read, whose movements are loaded whatever their company.
    """
    transactions, rows = recheck
    with sessions() as session:
        # the ledger's window is read in the background while the expected entries are read
        ledger_of = ledger_reading(session, wide.since, wide.until)
        expected = expected_frame(session, wide.since, wide.until, companies, stripe_account)
        outside = set(transactions) - frames.ids_of(
            expected[expected["transaction_id"].isin(list(transactions))], "transaction_id"
        )
        if outside:
            expected = frames.joined(expected, expected_by_ids(session, outside))
        named = frames.joined_ids(expected["transaction_id"], corrections)
        ledger = ledger_of(named)
        if rows:
            ledger = frames.joined(ledger, ledger_by_ids(session, rows))
            ledger = ledger.drop_duplicates(subset="moesif_id").reset_index(drop=True)
    ledger = with_known_ids(sessions, frames.of_companies(ledger, companies))
    strays = frames.strays(ledger, expected)
    if not strays:
        return Frames(expected, ledger)
    unreadable: list[Unreadable] = []
    with sessions.begin() as session:
        unknown = strays - set(expected_by_ids(session, strays)["transaction_id"])
        if unknown:
            fetched = extract_by_ids(
                client, unknown, companies=companies, on_unreadable=unreadable.append
            )
            store_expected(session, fetched, run_id=run_id, now=now, stripe_account=stripe_account)
        older = expected_by_ids(session, strays)
    return Frames(frames.joined(expected, older), ledger, tuple(unreadable))


@dataclass(frozen=True)
class Loaded:
    """What a run compares: both sides, what it could read, and the subscriptions paid into."""

    frames: Frames
    present: Present
    """Transaction ids and Moesif row ids this run could read."""
    paid: PaidInto


def load(
    sessions: Sessions,
    client: stripe.StripeClient,
    directory: SubscriptionDirectory,
    run: Begun,
    companies: Sequence[str],
    rechecked: Mapping[str, lifecycle.Subject],
    *,
    now: datetime,
) -> Loaded:
    """Load both sides of the wide span, the re-checked findings' subjects wherever they lie."""
    loaded = frames_of(
        sessions,
        client,
        run.spans.wide,
        companies,
        run_id=run.run_id,
        now=now,
        recheck=lifecycle.subject_ids(rechecked),
        corrections=[correction_id(fid, leg) for fid in rechecked for leg in (1, 2)],
        stripe_account=run.stripe_account,
    )
    expected, ledger = loaded.expected, loaded.ledger
    present = Present((expected["transaction_id"], ledger["moesif_id"]))
    # An account's run compares the companies the account maps to: none of them was asked for.
    asked = companies if run.stripe_account is None else ()
    for company in frames.unknown_companies(asked, expected, ledger):
        log.warning("--company %s matches nothing in Stripe or Moesif in this window", company)
    paid = subscriptions_paid_into(
        sessions, directory, frames.subscriptions_paid(frames.in_window(expected, run.spans.window))
    )
    return Loaded(loaded, present, paid)


def with_known_ids(sessions: Sessions, ledger: pd.DataFrame) -> pd.DataFrame:
    """Give rows without a Stripe id the one they are known by (see ``rules.known_ids``)."""
    named = frames.named_by_stripe(ledger)
    if named.all():
        return ledger
    others = ledger[~named]
    # Only a description that begins as the job's postings' do can name a movement: each other
    # of these rows needs an earlier run's memory, and keeps its id without one (known_id).
    posted = frames.begins_with(others["description"], OWN_POSTING_HEAD)
    asking = [
        moesif_id
        for tid, text, moesif_id in frames.ledger_cells(others[posted], *_KNOWN_BY)
        if needs_memory(tid, text)
    ]
    asking += others.loc[~posted, "moesif_id"].dropna().tolist()
    with sessions() as session:
        pairs = remembered_pairs(session, asking) if asking else {}
    changing = others[posted | others["moesif_id"].isin(list(pairs))]
    cells = frames.ledger_cells(changing, *_KNOWN_BY)
    return frames.with_ids(
        ledger, changing.index, [known_id(tid, text, mid, pairs) for tid, text, mid in cells]
    )


_KNOWN_BY = ("transaction_id", "description", "moesif_id")
"""The ledger columns :func:`reconcile.rules.known_ids.known_id` reads."""


def account_scope(sessions: Sessions, run: Begun, companies: Sequence[str]) -> tuple[str, ...]:
    """Return the companies a run compares: those asked for, or a connected account's own.

    A connected account's run compares only the Moesif companies its movements map to (the
    snapshot's, after its Stripe read): Moesif is one book for every account, and another
    account's companies are that account's to compare. An account whose movements map to no
    company compares none: its own id stands in, a company Moesif does not hold.
    """
    if run.stripe_account is None or companies:
        return tuple(companies)
    with sessions() as session:
        own = account_companies(session, run.stripe_account)
    return tuple(own) or (run.stripe_account,)
