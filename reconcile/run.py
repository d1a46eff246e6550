"""One reconciliation pass: sync, extract, match, post, report; this module owns the transaction."""

from __future__ import annotations

import logging
import re
import secrets
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from reconcile import matching, report
from reconcile.config import Settings
from reconcile.db import runs
from reconcile.db.engine import describe, make_engine, upgrade_to_head
from reconcile.db.expected import expected_by_ids, expected_frame, store_expected
from reconcile.db.findings import remembered_pairs, store_findings
from reconcile.db.ledger import ledger_frame, sync_ledger
from reconcile.db.models import Run
from reconcile.db.postings import confirmed, settle_from_snapshot
from reconcile.db.subscriptions import SubscriptionDirectory
from reconcile.domain import Action, Category
from reconcile.errors import (
    ConfigError,
    DatabaseUnavailable,
    ExitCode,
    GuardrailTripped,
    ReconcileError,
    UsageError,
)
from reconcile.lock import run_lock
from reconcile.moesif.client import MoesifClient, open_http_client
from reconcile.money import to_major
from reconcile.observability import Progress
from reconcile.posting import origin
from reconcile.posting.engine import PostingEngine
from reconcile.posting.entry import Entry
from reconcile.posting.guardrails import check_guardrails
from reconcile.stripe.client import build_stripe_client
from reconcile.stripe.extract import ExtractProgress, extract, extract_by_ids
from reconcile.times import Window, to_iso

log = logging.getLogger(__name__)

REVIEW_ACTIONS = frozenset({Action.FLAGGED, Action.WOULD_POST, Action.POST_FAILED})

PENDING_HORIZON = timedelta(days=30)
"""How far before the usual start a run reaches back for a payment or refund still pending."""


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
    settings: Settings,
    request: RunRequest,
    *,
    now: datetime | None = None,
    clock: Callable[[], datetime] | None = None,
) -> RunOutcome:
    """Run one reconciliation pass and return what it did.

    Raises:
        ReconcileError: each subclass carries the exit code the process should end with.
    """
    tick = clock or (lambda: datetime.now(UTC))
    started_at = now or tick()
    engine = make_engine(settings.database_url)
    try:
        upgrade_to_head(engine)
        with run_lock(engine):
            return _Pass(settings, request, engine, started_at, tick).run()
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(f"snapshot database failed: {describe(error)}") from None
    finally:
        engine.dispose()


class _Pass:
    """The steps of one run, sharing its settings, clients and session factory."""

    def __init__(
        self,
        settings: Settings,
        request: RunRequest,
        engine: Engine,
        started_at: datetime,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.request = request
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.started_at = started_at
        self.clock = clock
        self.run_id = new_run_id(started_at)
        self.report_dir = request.report_dir or settings.report_dir
        self.unknown = 0
        self.stripe = build_stripe_client(settings)
        self.unreadable: frozenset[str] = frozenset()
        self.pending_since: datetime | None = None
        self.subscriptions: SubscriptionDirectory  # set once the Moesif client exists

    def run(self) -> RunOutcome:
        window = self._window()
        self._check_report_dir()
        with self.sessions.begin() as session:
            crashed = runs.mark_crashed(session, self.started_at)
            if crashed:
                log.warning("%d earlier run(s) ended mid-run; their postings are checked", crashed)
            session.add(self._run_row(window))
        log.info(
            "run %s: %s to %s%s",
            self.run_id,
            to_iso(window.since),
            to_iso(window.until),
            " (dry run)" if self.request.dry_run else "",
        )
        try:
            with open_http_client(self.settings) as http:
                moesif = MoesifClient(
                    http, self.settings.moesif_token, policy=self.settings.retry_policy()
                )
                self.subscriptions = SubscriptionDirectory(moesif, self.clock)
                return self._reconcile(window, moesif)
        except ReconcileError as error:
            self._finish_failed(error)
            raise

    def _check_report_dir(self) -> None:
        """Refuse to start, before anything is posted, when the report cannot be written."""
        try:
            self.report_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.report_dir, prefix=".probe-"):
                pass
        except OSError as error:
            raise ConfigError(
                f"the report directory {self.report_dir} cannot be written: "
                f"{error.strerror or error}"
            ) from None

    def _window(self) -> Window:
        until = self.request.until or self.started_at
        since = self.request.since
        if since is None:
            with self.sessions() as session:
                watermark = runs.last_watermark(session)
            if watermark is None:
                raise UsageError(
                    "no --since given and no earlier successful run to continue from; "
                    "pass --since for the first run"
                )
            since = watermark - self.settings.lookback
            since = min(since, self._pending_start(since))
        try:
            return Window(since, until)
        except ValueError as error:
            raise UsageError(str(error)) from None

    def _pending_start(self, since: datetime) -> datetime:
        """Reach back to the oldest movement the last run saw pending, within PENDING_HORIZON."""
        with self.sessions() as session:
            pending = runs.last_pending_since(session)
        if pending is None or pending >= since:
            return since
        start = max(pending, since - PENDING_HORIZON)
        log.info(
            "reading from %s: a Stripe payment or refund seen then was not final yet",
            to_iso(start),
        )
        return start

    def _run_row(self, window: Window) -> Run:
        return Run(
            id=self.run_id,
            since=window.since,
            until=window.until,
            dry_run=self.request.dry_run,
            companies=",".join(self.request.companies) or None,
            trigger=self.request.trigger,
            status=runs.RunStatus.RUNNING,
            started_at=self.started_at,
        )

    def _reconcile(self, window: Window, moesif: MoesifClient) -> RunOutcome:
        wide = window.widened(self.settings.match_window)
        now = self.clock()
        self._extract_stripe(Window(wide.since, min(wide.until, max(now, window.until))))
        # Up to now, not only to the window's end: rows posted for this window later (by an
        # earlier run, or a late webhook) carry the time they were posted.
        self._sync_ledger(Window(wide.since, max(now, wide.until)), moesif)
        findings = self._match(window, wide, moesif)
        findings, posted, failed, guardrail = self._post(findings, moesif)
        return self._finish(window, findings, posted, failed, guardrail)

    def _extract_stripe(self, reach: Window) -> None:
        client = self.stripe
        progress = Progress("Stripe", unit="days read")

        def advance(step: ExtractProgress) -> None:
            progress.total = step.slices_total
            progress.advance(1)

        def pending(created: datetime) -> None:
            if self.pending_since is None or created < self.pending_since:
                self.pending_since = created

        with self.sessions.begin() as session:
            stored = store_expected(
                session,
                extract(
                    client,
                    reach.since,
                    reach.until,
                    companies=self.request.companies,
                    progress=advance,
                    on_pending=pending,
                ),
                run_id=self.run_id,
                now=self.clock(),
            )
            session.get_one(Run, self.run_id).stripe_entries = stored
        progress.done()

    def _sync_ledger(self, reach: Window, moesif: MoesifClient) -> None:
        progress = Progress("Moesif ledger", unit="rows")
        with self.sessions.begin() as session:

            def currency_for(subscription_id: str) -> str | None:
                return self.subscriptions.currency(session, subscription_id)

            result = sync_ledger(
                session,
                moesif,
                reach.since,
                reach.until,
                amount_unit=self.settings.moesif_amount_unit,
                companies=self.request.companies,
                now=self.clock(),
                progress=progress.advance,
                currency_for=currency_for,
            )
            session.get_one(Run, self.run_id).ledger_rows = result.rows_seen
            settled = settle_from_snapshot(session, self.clock())
        self.unreadable = result.unreadable_ids
        progress.done()
        if settled:
            log.info(
                "%d unfinished posting(s) found in the Moesif ledger and confirmed: %s",
                len(settled),
                ", ".join(settled),
            )

    def _match(self, window: Window, wide: Window, moesif: MoesifClient) -> pd.DataFrame:
        expected, ledger = self._frames(wide)
        in_window = expected[
            (expected["created_at"] >= window.since) & (expected["created_at"] < window.until)
        ]
        currencies: dict[str, str | None] = {}
        paid_in = in_window.dropna(subset=["subscription_id"]).groupby("subscription_id")
        with self.sessions.begin() as session:
            for subscription_id, entries in paid_in:
                currency = str(entries["currency"].iloc[0])
                known = self.subscriptions.lookup(session, str(subscription_id), expect=currency)
                if known is None:
                    currencies[str(subscription_id)] = None
                elif known.currency:
                    currencies[str(subscription_id)] = known.currency
                # a subscription without a currency exists; only the currency check is skipped
        return matching.match(
            expected,
            ledger,
            window=window,
            match_window=self.settings.match_window,
            subscription_currency=currencies,
        )

    def _frames(self, wide: Window) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Load the expected entries and ledger rows of the widened window.

        Ledger rows that name a Stripe movement from outside it (an earlier run's posting, a
        late webhook) bring that movement's expected entry along, so they match it: from the
        snapshot when an earlier run read it, else fetched from Stripe by id.
        """
        companies = self.request.companies
        with self.sessions() as session:
            expected = expected_frame(session, wide.since, wide.until, companies)
            ledger = ledger_frame(
                session, wide.since, wide.until, expected["transaction_id"].tolist()
            )
        if companies:
            ledger = ledger[ledger["company_id"].isin(companies)]
        ledger = self._with_known_ids(ledger)
        named = {tid for tid in ledger["transaction_id"].dropna() if matching.is_stripe_id(tid)}
        strays = named - set(expected["transaction_id"])
        if not strays:
            return expected, ledger
        with self.sessions.begin() as session:
            unknown = strays - set(expected_by_ids(session, strays)["transaction_id"])
            if unknown:
                fetched = extract_by_ids(self.stripe, unknown, companies=companies)
                store_expected(session, fetched, run_id=self.run_id, now=self.clock())
            older = expected_by_ids(session, strays)
        if older.empty:
            return expected, ledger
        return pd.concat([expected, older], ignore_index=True), ledger

    def _with_known_ids(self, ledger: pd.DataFrame) -> pd.DataFrame:
        """Give rows without a Stripe id the one they are known by.

        Reports may leave ids out: a row the job posted names its id in its description, and a
        row an earlier run matched by amount keeps the movement it was matched to.
        """
        anonymous = ~ledger["transaction_id"].map(matching.is_stripe_id, na_action="ignore").eq(
            True
        )
        if not anonymous.any():
            return ledger
        ledger = ledger.copy()
        own = ledger["description"].str.extract(OWN_POSTING, expand=False)
        known = anonymous & own.notna()
        ledger.loc[known, "transaction_id"] = own[known]
        anonymous &= ~known
        with self.sessions() as session:
            pairs = remembered_pairs(session, ledger.loc[anonymous, "moesif_id"].tolist())
        chosen = ledger["moesif_id"].map(pairs)
        remembered = anonymous & chosen.notna()
        ledger.loc[remembered, "transaction_id"] = chosen[remembered]
        return ledger

    def _post(
        self, findings: pd.DataFrame, moesif: MoesifClient
    ) -> tuple[pd.DataFrame, int, int, GuardrailTripped | None]:
        findings = findings.copy()
        missing = findings["category"] == Category.MISSING_IN_MOESIF
        with self.sessions() as session:
            already = confirmed(session, findings.loc[missing, "transaction_id"].tolist())
        for index in findings.index[missing]:
            transaction_id = str(findings.at[index, "transaction_id"])
            if transaction_id in self.unreadable:
                findings.at[index, "action"] = Action.FLAGGED
                findings.at[index, "detail"] = (
                    "Moesif holds a row with this transaction id that could not be read; "
                    "not posted, check it in Moesif"
                )
                continue
            earlier = already.get(transaction_id)
            if earlier is not None:
                findings.at[index, "action"] = Action.FLAGGED
                findings.at[index, "detail"] = (
                    f"posted by run {earlier.run_id} and confirmed by Moesif; "
                    "not in Moesif's reports yet, so not sent again"
                )
        todo = findings.index[missing & (findings["action"] == Action.WOULD_POST)]
        orders = [self._order(findings.loc[index]) for index in todo]
        if self.request.dry_run or not orders:
            return findings, 0, 0, None
        try:
            check_guardrails(
                orders,
                max_postings=self.settings.max_postings,
                max_total=self.settings.max_posting_total,
            )
        except GuardrailTripped as tripped:
            findings.loc[todo, "detail"] = "not posted: " + str(tripped)
            return findings, 0, 0, tripped
        return self._send(findings, todo, orders, moesif)

    def _send(
        self, findings: pd.DataFrame, todo: pd.Index, orders: list[Entry], moesif: MoesifClient
    ) -> tuple[pd.DataFrame, int, int, GuardrailTripped | None]:
        poster = PostingEngine(
            self.sessions, moesif, amount_unit=self.settings.moesif_amount_unit, clock=self.clock
        )
        progress = Progress("Postings", total=len(orders), unit="postings")
        counts: Counter[Action] = Counter()
        for index, order in zip(todo, orders, strict=True):
            try:
                outcome = poster.post(order, origin=origin.for_run(self.run_id))
            except ReconcileError as error:
                rest = todo[todo.get_loc(index) :]
                findings.loc[rest, "action"] = Action.POST_FAILED
                findings.loc[rest, "detail"] = f"not posted: {error}"
                self._save(findings)
                raise
            findings.at[index, "action"] = outcome.action
            if outcome.detail:
                findings.at[index, "detail"] = outcome.detail
            counts[outcome.action] += 1
            self.unknown += outcome.unknown
            progress.advance(1)
        progress.done()
        return findings, counts[Action.POSTED], counts[Action.POST_FAILED], None

    def _order(self, finding: pd.Series) -> Entry:
        entry_type: Literal["credit", "debit"] = (
            "debit" if finding["entry_type"] == "debit" else "credit"
        )
        return Entry(
            transaction_id=str(finding["transaction_id"]),
            company_id=str(finding["company_id"]),
            subscription_id=str(finding["subscription_id"]),
            entry_type=entry_type,
            amount_minor=int(finding["stripe_amount_minor"]),
            currency=str(finding["currency"]),
            description=posting_description(finding, self.run_id),
        )

    def _save(self, findings: pd.DataFrame) -> Path:
        path = report.write_report(findings, self.run_id, self.report_dir)
        with self.sessions.begin() as session:
            store_findings(session, self.run_id, findings)
            row = session.get_one(Run, self.run_id)
            row.report_path = str(path)
            row.findings = len(findings)
        return path

    def _finish(
        self,
        window: Window,
        findings: pd.DataFrame,
        posted: int,
        failed: int,
        guardrail: GuardrailTripped | None,
    ) -> RunOutcome:
        path = self._save(findings)
        review = int(findings["action"].isin(REVIEW_ACTIONS).sum())
        exit_code = ExitCode.DRIFT if review else ExitCode.OK
        if self.unknown:
            exit_code = ExitCode.FAILED
        if guardrail is not None:
            exit_code = ExitCode.GUARDRAIL
        finished_at = self.clock()
        full_run = not (self.request.dry_run or self.request.companies)
        with self.sessions.begin() as session:
            row = session.get_one(Run, self.run_id)
            row.status = (
                runs.RunStatus.GUARDRAIL if guardrail is not None else runs.RunStatus.SUCCEEDED
            )
            row.exit_code = int(exit_code)
            row.finished_at = finished_at
            row.flagged = review
            row.posted = posted
            row.post_failed = failed
            row.error = str(guardrail) if guardrail is not None else None
            row.pending_since = self.pending_since
            if full_run and guardrail is None and failed == 0:
                # Never past the run's start: what Stripe and Moesif had not yet seen then,
                # the next run must read.
                row.watermark = min(window.until, self.started_at)
        text = report.summary(
            findings,
            posted=posted,
            post_failed=failed,
            report_path=path,
            window=window,
            dry_run=self.request.dry_run,
        )
        return RunOutcome(
            run_id=self.run_id,
            exit_code=exit_code,
            window=window,
            started_at=self.started_at,
            finished_at=finished_at,
            counts=dict(Counter(findings["category"].astype(str))),
            totals=_totals(findings),
            posted=posted,
            post_failed=failed,
            report_path=path,
            message=str(guardrail) if guardrail is not None else "",
            summary=text,
        )

    def _finish_failed(self, error: ReconcileError) -> None:
        try:
            with self.sessions.begin() as session:
                row = session.get(Run, self.run_id)
                if row is None:
                    return
                row.status = runs.RunStatus.FAILED
                row.exit_code = int(error.exit_code)
                row.finished_at = self.clock()
                row.error = str(error)
        except SQLAlchemyError:
            log.exception("could not record the failure of run %s", self.run_id)


def posting_description(finding: pd.Series, run_id: str) -> str:
    """Return the description of a posting; it names the transaction id, to be read back."""
    return (
        f"reconcile: {finding['entry_type']} {finding['transaction_id']} "
        f"for Stripe {finding['stripe_object_id']} (run {run_id})"
    )


OWN_POSTING = re.compile(r"^reconcile: (?:credit|debit) (\S+) for Stripe ")
"""How a row the job posted names its transaction id in its description."""


def _totals(findings: pd.DataFrame) -> dict[str, str]:
    totals: dict[str, str] = {}
    amounts = findings.dropna(subset=["stripe_amount_minor", "currency"])
    grouped = amounts.groupby(["category", "currency", "entry_type"], as_index=False)
    for category, currency, entry_type, total in (
        grouped["stripe_amount_minor"].sum().itertuples(index=False, name=None)
    ):
        totals[f"{category}:{currency}:{entry_type}"] = str(to_major(int(total), str(currency)))
    return totals
