"""Per-subscription balance check: Stripe's net against Moesif's net and Moesif's own balance.

The nets are summed by the database (``GROUP BY``) from the snapshot. Each subscription's
current balance, pending activity and available balance come from its latest billing-report
row in the snapshot (as of that row's time) where :mod:`reconcile.rules.balance_source` allows,
and otherwise from Moesif, one request each, under the rate limiter (as of the read). Rows whose
delta is not zero come first, and among them customers Moesif blocks (available balance zero or
less); then each currency's rows by the size of their delta in that currency. A row in another
currency than its subscription's (``currency_mismatch``) shows none of the subscription's
figures, which are in the subscription's currency.
"""

from __future__ import annotations

import csv
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Settings
from reconcile.db.balances import (
    Key,
    LatestBalance,
    confirmed_unseen_nets,
    latest_balances,
    moesif_nets,
    read_windows,
    stripe_nets,
)
from reconcile.db.engine import describe, make_engine, upgrade_to_head
from reconcile.db.finding_states import open_counts_by_subscription
from reconcile.db.subscriptions import kept_currencies
from reconcile.domain.money import exponent, format_major, to_major
from reconcile.domain.times import to_iso
from reconcile.errors import DatabaseUnavailable
from reconcile.moesif.client import (
    MoesifClient,
    Subscription,
    open_http_client,
)
from reconcile.retry import RateLimiter
from reconcile.rules.balance_source import newest_window_start, read_from_moesif

log = logging.getLogger(__name__)

BALANCE_COLUMNS = [
    "company_id",
    "subscription_id",
    "currency",
    "stripe_net",
    "moesif_net",
    "delta",
    "current_balance",
    "pending_activity",
    "available_balance",
    "open_findings",
]
"""The contract's columns of ``balances-{run_id}.csv``, in its order."""

EXTRA_COLUMNS = ["blocked", "owed", "as_of", "subscription_currency"]
"""Columns appended after the contract's: ``blocked`` (Moesif shows no available credit),
``owed`` (``owed`` or ``over-credited``), ``as_of`` (the time of Moesif's figures) and
``subscription_currency`` (the currency Moesif keeps the subscription in)."""

CSV_COLUMNS = [*BALANCE_COLUMNS, *EXTRA_COLUMNS]
"""Every column of ``balances-{run_id}.csv``, in order."""

BLOCKED = "blocked"
OWED = "owed"
OVER_CREDITED = "over-credited"

_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Balance:
    """Moesif's three figures of one subscription, in major units of its currency.

    ``as_of`` is when they held: the time of the billing-report row they end, or of the read.
    ``currency`` is the subscription's, when known.
    """

    current_balance: Decimal
    pending_activity: Decimal
    available_balance: Decimal
    as_of: datetime | None = None
    currency: str | None = None


@dataclass(frozen=True)
class BalanceRow:
    """One subscription and currency: the nets in minor units, Moesif's balance if known."""

    company_id: str
    subscription_id: str
    currency: str
    stripe_net_minor: int
    moesif_net_minor: int
    balance: Balance | None
    open_findings: int
    subscription_currency: str | None = None
    """The currency Moesif keeps the subscription in, when known."""

    @property
    def delta_minor(self) -> int:
        """Return the correction the balance needs: positive when the customer is owed."""
        return self.stripe_net_minor - self.moesif_net_minor

    @property
    def delta_major(self) -> Decimal:
        """Return the delta in major units of the row's currency."""
        return to_major(self.delta_minor, self.currency if _is_code(self.currency) else "usd")

    @property
    def currency_mismatch(self) -> bool:
        """Return whether the money counted is in another currency than the subscription's."""
        own = self.subscription_currency
        return own is not None and own != self.currency

    @property
    def blocked(self) -> bool:
        """Return whether Moesif shows no available credit (zero or less)."""
        return self.balance is not None and self.balance.available_balance <= 0

    @property
    def blocked_but_owed(self) -> bool:
        """Return whether the customer is blocked while Stripe says they are owed credit."""
        return self.blocked and self.delta_minor > 0


# Rules: plain values in, plain values out.


def merge_nets(
    stripe: Mapping[Key, int], moesif: Mapping[Key, int], confirmed: Mapping[Key, int]
) -> dict[Key, tuple[int, int]]:
    """Return (Stripe net, Moesif net) per key; confirmed postings count on Moesif's side."""
    keys = set(stripe) | set(moesif) | set(confirmed)
    return {key: (stripe.get(key, 0), moesif.get(key, 0) + confirmed.get(key, 0)) for key in keys}


def order_rows(rows: Iterable[BalanceRow]) -> list[BalanceRow]:
    """Return rows with a non-zero delta first, blocked customers first among them.

    Then each currency's rows by the size of their delta in that currency's major units,
    largest first (amounts of different currencies are never weighed against each other), then
    by company and subscription.
    """
    return sorted(
        rows,
        key=lambda row: (
            row.delta_minor == 0,
            not row.blocked,
            row.currency,
            -abs(row.delta_major),
            row.company_id,
            row.subscription_id,
        ),
    )


def exit_code_of(rows: Sequence[BalanceRow]) -> int:
    """Return 1 when any delta is not zero, else 0."""
    return 1 if any(row.delta_minor for row in rows) else 0


def balance_from_moesif(
    subscription: Subscription,
    amount_unit: Literal["major", "minor"],
    currency: str,
    as_of: datetime | None = None,
) -> Balance:
    """Return Moesif's figures in major units (they are minor units when Moesif keeps cents)."""
    places = exponent(currency) if amount_unit == "minor" else 0
    return Balance(
        current_balance=subscription.current_balance.scaleb(-places),
        pending_activity=subscription.pending_activity.scaleb(-places),
        available_balance=subscription.available_balance.scaleb(-places),
        as_of=as_of,
        currency=subscription.currency,
    )


def balance_from_row(latest: LatestBalance, currency: str) -> Balance:
    """Return the balance after a subscription's latest row, as of that row's time."""
    return Balance(
        current_balance=to_major(latest.current_minor, currency),
        pending_activity=to_major(latest.pending_minor, currency),
        available_balance=to_major(latest.available_minor, currency),
        as_of=latest.created_at,
        currency=latest.currency,
    )


def csv_cells(row: BalanceRow) -> list[str]:
    """Return one CSV row: decimal strings in major units, text safe from spreadsheets."""
    figures = row.balance
    return [
        _neutralise(row.company_id),
        _neutralise(row.subscription_id),
        _neutralise(row.currency),
        _major(row.stripe_net_minor, row.currency),
        _major(row.moesif_net_minor, row.currency),
        _major(row.delta_minor, row.currency),
        "" if figures is None else str(figures.current_balance),
        "" if figures is None else str(figures.pending_activity),
        "" if figures is None else str(figures.available_balance),
        str(row.open_findings),
        BLOCKED if row.blocked else "",
        owed_word(row.delta_minor),
        "" if figures is None or figures.as_of is None else to_iso(figures.as_of),
        _neutralise(row.subscription_currency or ""),
    ]


def owed_word(delta_minor: int) -> str:
    """Return ``owed`` for a positive delta, ``over-credited`` for a negative one, else ``""``."""
    if delta_minor == 0:
        return ""
    return OWED if delta_minor > 0 else OVER_CREDITED


def _major(minor: int, currency: str) -> str:
    return format_major(minor, currency) if _is_code(currency) else str(minor)


def _is_code(currency: str) -> bool:
    return len(currency) == 3 and currency.isascii() and currency.isalpha()


def _neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_TRIGGERS) else cell


# The command's work.


def read_balances(
    moesif: MoesifClient,
    subscription_ids: Iterable[str],
    amount_unit: Literal["major", "minor"],
    currency_of: Mapping[str, str],
    clock: Callable[[], datetime] | None = None,
) -> dict[str, Balance | None]:
    """Read each subscription's balance from Moesif once; ``None`` when Moesif has no such id.

    Every request waits for the client's rate limiter, so the batch's share of Moesif's budget
    is never exceeded. Each balance is as of ``clock()`` when its answer came.
    """
    balances: dict[str, Balance | None] = {}
    for subscription_id in subscription_ids:
        found = moesif.subscription(subscription_id)
        currency = (found.currency if found else None) or currency_of[subscription_id]
        as_of = clock() if clock is not None else None
        balances[subscription_id] = (
            None if found is None else balance_from_moesif(found, amount_unit, currency, as_of)
        )
    return balances


@dataclass(frozen=True)
class Snapshot:
    """What the snapshot says per subscription: the nets, open findings and latest balances.

    ``latest`` holds the balance after each subscription's latest row, ``kept`` the currency
    each subscription was last read in, ``fresh_from`` the start of the newest window a run
    read in full, and ``unseen`` the subscriptions with a confirmed posting no row shows yet.
    """

    nets: dict[Key, tuple[int, int]]
    open_counts: dict[tuple[str | None, str | None], int]
    latest: dict[str, LatestBalance] = field(default_factory=dict)
    kept: dict[str, str | None] = field(default_factory=dict)
    fresh_from: datetime | None = None
    unseen: frozenset[str] = frozenset()

    def subscriptions(self) -> list[str]:
        """Return the subscription ids that have a row, sorted."""
        return sorted({subscription for _, subscription, _ in self.nets})

    def currency_of(self) -> dict[str, str]:
        """Return a currency per subscription id, to read Moesif's amounts in."""
        found = {subscription: currency for _, subscription, currency in sorted(self.nets)}
        for subscription in found:
            own = self.own_currency(subscription)
            found[subscription] = own or found[subscription]
        return found

    def own_currency(self, subscription_id: str) -> str | None:
        """Return the subscription's currency: its latest row's, or as last read from Moesif."""
        latest = self.latest.get(subscription_id)
        if latest is not None and latest.currency:
            return latest.currency
        kept = self.kept.get(subscription_id)
        return kept.lower() if kept else None

    def to_read(self) -> list[str]:
        """Return the subscriptions whose balance must be read from Moesif (the rest are kept)."""
        return [
            subscription
            for subscription in self.subscriptions()
            if read_from_moesif(
                self._latest_at(subscription),
                self.fresh_from,
                unseen_postings=subscription in self.unseen,
            )
        ]

    def row_balances(self, subscription_ids: Iterable[str]) -> dict[str, Balance]:
        """Return the balance after the latest row of each of these that has one."""
        currency_of = self.currency_of()
        return {
            subscription: balance_from_row(
                self.latest[subscription],
                self.latest[subscription].currency or currency_of.get(subscription, ""),
            )
            for subscription in subscription_ids
            if subscription in self.latest
        }

    def _latest_at(self, subscription_id: str) -> datetime | None:
        latest = self.latest.get(subscription_id)
        return None if latest is None else latest.created_at


def read_snapshot(session: Session, companies: Sequence[str] = ()) -> Snapshot:
    """Return the nets and open-finding counts, each summed by the database, and the balances."""
    unseen = confirmed_unseen_nets(session, companies)
    nets = merge_nets(stripe_nets(session, companies), moesif_nets(session, companies), unseen)
    return Snapshot(
        nets,
        open_counts_by_subscription(session),
        latest=latest_balances(session, companies),
        kept={sid: kept.currency for sid, kept in kept_currencies(session).items()},
        fresh_from=newest_window_start(read_windows(session), companies),
        unseen=frozenset(subscription for _, subscription, _ in unseen),
    )


def build_rows(snapshot: Snapshot, balances: Mapping[str, Balance | None]) -> list[BalanceRow]:
    """Return the ordered balance rows from the snapshot's nets and the balances found.

    A row in another currency than its subscription's keeps none of the subscription's figures;
    when the subscription has no row in its own currency, one is added (nets of zero) to show
    them.
    """
    rows: list[BalanceRow] = []
    for (company, subscription, currency), (stripe_net, moesif_net) in snapshot.nets.items():
        balance = balances.get(subscription)
        own = (balance.currency if balance else None) or snapshot.own_currency(subscription)
        row = BalanceRow(
            company_id=company,
            subscription_id=subscription,
            currency=currency,
            stripe_net_minor=stripe_net,
            moesif_net_minor=moesif_net,
            balance=balance,
            open_findings=snapshot.open_counts.get((company, subscription), 0),
            subscription_currency=own,
        )
        rows.append(replace(row, balance=None) if row.currency_mismatch else row)
    held = {(row.subscription_id, row.currency) for row in rows}
    for row in [row for row in rows if row.currency_mismatch]:
        own, balance = row.subscription_currency, balances.get(row.subscription_id)
        if own is not None and balance is not None and (row.subscription_id, own) not in held:
            held.add((row.subscription_id, own))
            rows.append(
                replace(row, currency=own, stripe_net_minor=0, moesif_net_minor=0, balance=balance)
            )
    return order_rows(rows)


def balances_run_id(now: datetime) -> str:
    """Return a sortable, unique id for one balance check, like a run's."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def write_balances(rows: Sequence[BalanceRow], run_id: str, report_dir: Path) -> Path:
    """Write ``{report_dir}/balances-{run_id}.csv`` atomically and return its path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"balances-{run_id}.csv"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=report_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            writer.writerows(csv_cells(row) for row in rows)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def summary_line(rows: Sequence[BalanceRow], path: Path, read_from_moesif: int = 0) -> str:
    """Return the one-paragraph terminal summary of a balance check."""
    drifted = sum(1 for row in rows if row.delta_minor)
    blocked = sum(1 for row in rows if row.delta_minor and row.blocked)
    mismatched = sum(1 for row in rows if row.currency_mismatch)
    unknown = sum(1 for row in rows if row.balance is None and not row.currency_mismatch)
    subscriptions = len({row.subscription_id for row in rows})
    lines = [
        f"subscriptions: {subscriptions} ({len(rows)} rows)",
        f"with a non-zero delta: {drifted} (blocked in Moesif: {blocked})",
        f"balances read from Moesif now: {read_from_moesif}; the others are as of their "
        "latest billing-report row (as_of)",
    ]
    if mismatched:
        lines.append(
            f"in another currency than their subscription (currency_mismatch): {mismatched}"
        )
    if unknown:
        lines.append(f"not found in Moesif: {unknown}")
    lines.append(f"balances: {path}")
    return "\n".join(lines)


# The command: optionally fill the snapshot, then compute, read and write.

SnapshotFill = Callable[[Settings, datetime, Sequence[str], Path], int]
"""Fills the snapshot from a time to now for some companies (all when none), reports in a
folder, and returns the exit code; the command line passes a dry run of the job."""


@dataclass(frozen=True)
class BalanceCheck:
    """What one balance check found and where it wrote it."""

    rows: tuple[BalanceRow, ...]
    path: Path
    exit_code: int
    read_from_moesif: int = 0
    """Subscriptions whose balance was read from Moesif (one request each)."""


def check_balances(
    settings: Settings,
    *,
    companies: Sequence[str] = (),
    report_dir: Path | None = None,
    since: datetime | None = None,
    clock: Callable[[], datetime],
    limiter: RateLimiter | None = None,
    fill: SnapshotFill | None = None,
) -> BalanceCheck:
    """Check every subscription's balance and write the CSV; exit code 1 if any delta is not 0.

    With ``since``, ``fill`` first fills the snapshot from then to now. Moesif's figures come
    from each subscription's latest billing-report row where :mod:`reconcile.rules.balance_source`
    allows; only the other subscriptions are read from Moesif, through ``limiter``.

    Raises:
        ReconcileError: the database, Moesif or (while filling) Stripe failed; its exit code.
        ValueError: ``since`` without ``fill``.
    """
    directory = report_dir or settings.report_dir
    if since is not None:
        if fill is None:
            raise ValueError("filling the snapshot from `since` needs `fill`")
        fill(settings, since, companies, directory)
    engine = make_engine(settings.database_url)
    try:
        upgrade_to_head(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        with open_http_client(settings) as http:
            moesif = MoesifClient(
                http,
                settings.moesif_token,
                policy=settings.retry_policy(),
                limiter=limiter or RateLimiter(settings.moesif_requests_per_minute, 60.0),
                read_cap=settings.moesif_read_cap,
            )
            with sessions() as session:
                snapshot = read_snapshot(session, companies)
            # Read outside the database transaction: at the rate limit this can take minutes.
            wanted = snapshot.to_read()
            balances: dict[str, Balance | None] = {
                **snapshot.row_balances(snapshot.subscriptions())
            }
            balances.update(
                read_balances(
                    moesif, wanted, settings.moesif_amount_unit, snapshot.currency_of(), clock
                )
            )
            rows = build_rows(snapshot, balances)
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(f"snapshot database failed: {describe(error)}") from None
    finally:
        engine.dispose()
    path = write_balances(rows, balances_run_id(clock()), directory)
    return BalanceCheck(tuple(rows), path, exit_code_of(rows), len(wanted))
