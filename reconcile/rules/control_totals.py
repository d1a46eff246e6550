"""Whether the run's Stripe read was complete: Stripe's own totals and counterparts (section 11).

Two checks. Against Stripe's figures: the balance transactions the run paged, summed per
reporting category and currency, must equal the rows of the Reporting API's
``balance_change_from_activity.summary.1`` for the window (columns ``reporting_category``,
``currency``, ``count``, ``gross``, ``fee``, ``net``; amounts in major units). Inside Stripe:
every succeeded top-up, refund and dispute names a balance transaction the run paged, and every
such balance transaction is named by one of them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from reconcile.domain.money import format_major, to_minor

STRIPE_TOTAL_MISMATCH = "stripe_total_mismatch"
"""The finding's category (contract section 6)."""

SUMMARY_REPORT = "balance_change_from_activity.summary.1"
"""The Reporting API's report type whose rows :func:`total_mismatches` compares with."""

TOTAL_ROW = "total"
"""A summary row of this reporting category totals the others and is not compared."""


@dataclass(frozen=True)
class PagedTransaction:
    """A balance transaction the run paged, amounts in minor units as Stripe gives them."""

    id: str
    reporting_category: str
    currency: str
    amount: int
    fee: int
    net: int


@dataclass(frozen=True)
class Totals:
    """A count of balance transactions and their sums in minor units."""

    count: int = 0
    gross: int = 0
    fee: int = 0
    net: int = 0

    def plus(self, other: Totals) -> Totals:
        """Return the totals of both."""
        return Totals(
            self.count + other.count,
            self.gross + other.gross,
            self.fee + other.fee,
            self.net + other.net,
        )


@dataclass(frozen=True)
class TotalMismatch:
    """A reporting category and currency whose paged totals differ from Stripe's summary."""

    reporting_category: str
    currency: str
    paged: Totals
    reported: Totals
    detail: str


Key = tuple[str, str]
"""A reporting category and a lower-case currency."""


def _minor(text: str, currency: str, column: str) -> int:
    try:
        return to_minor(Decimal(text.strip()), currency)
    except (InvalidOperation, ValueError) as problem:
        raise ValueError(
            f"the summary's {column} {text[:40]!r} is no {currency.upper()} amount"
        ) from problem


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"the summary's count {text[:40]!r} is not a whole number")
    return int(text)


def summary_totals(rows: Iterable[Mapping[str, str]]) -> dict[Key, Totals]:
    """Return the summary report's totals in minor units, per reporting category and currency.

    Args:
        rows: the report's CSV rows by column name, as ``csv.DictReader`` gives them.

    Returns:
        The totals; rows of one category and currency are added up, the ``total`` row left out.

    Raises:
        ValueError: a figure is not an exact amount of its currency, or a count no whole number.
    """
    totals: dict[Key, Totals] = {}
    for row in rows:
        category, currency = row["reporting_category"], row["currency"].strip().lower()
        if category == TOTAL_ROW:
            continue
        figures = Totals(
            _count(row["count"]),
            *(_minor(row[column], currency, column) for column in ("gross", "fee", "net")),
        )
        key = (category, currency)
        totals[key] = totals.get(key, Totals()).plus(figures)
    return totals


def paged_totals(transactions: Iterable[PagedTransaction]) -> dict[Key, Totals]:
    """Return the paged balance transactions' totals per reporting category and currency.

    A transaction paged twice (at a page boundary) counts once.
    """
    totals: dict[Key, Totals] = {}
    for moved in {moved.id: moved for moved in transactions}.values():
        key = (moved.reporting_category, moved.currency.lower())
        figures = Totals(1, moved.amount, moved.fee, moved.net)
        totals[key] = totals.get(key, Totals()).plus(figures)
    return totals


def _detail(category: str, currency: str, paged: Totals, reported: Totals) -> str:
    def shown(totals: Totals) -> str:
        gross, net = format_major(totals.gross, currency), format_major(totals.net, currency)
        return f"{totals.count} for {gross} gross, {net} net"

    return (
        f"{category} in {currency.upper()}: the run paged {shown(paged)}; "
        f"Stripe's summary has {shown(reported)}"
    )


def total_mismatches(
    transactions: Iterable[PagedTransaction],
    summary_rows: Iterable[Mapping[str, str]],
    categories: Collection[str] | None = None,
) -> list[TotalMismatch]:
    """Return each reporting category and currency where the paged totals differ from Stripe's.

    Count, gross and net are compared; the fee follows from them (net is gross less the fee)
    and is carried in both totals without being compared, so the sign the report writes its
    fees with cannot make a difference appear.

    Args:
        transactions: the balance transactions the run paged over the window.
        summary_rows: the rows of Stripe's ``balance_change_from_activity.summary.1`` for the
            same window, as its CSV has them.
        categories: the reporting categories the run pages; ``None`` compares every one.

    Returns:
        The mismatches, ordered by category and currency.

    Raises:
        ValueError: a summary figure does not parse (see :func:`summary_totals`).
    """
    paged, reported = paged_totals(transactions), summary_totals(summary_rows)
    mismatches = []
    for category, currency in sorted(paged.keys() | reported.keys()):
        if categories is not None and category not in categories:
            continue
        ours = paged.get((category, currency), Totals())
        theirs = reported.get((category, currency), Totals())
        if (ours.count, ours.gross, ours.net) != (theirs.count, theirs.gross, theirs.net):
            detail = _detail(category, currency, ours, theirs)
            mismatches.append(TotalMismatch(category, currency, ours, theirs, detail))
    return mismatches


@dataclass(frozen=True)
class MovedObject:
    """A succeeded top-up PaymentIntent, refund or dispute, with the balance transactions it names.

    A top-up names its charge's ``balance_transaction``, a refund its own, a dispute its
    ``balance_transactions`` (funds withdrawn, and reinstated when they were).
    """

    id: str
    kind: str
    balance_transaction_ids: tuple[str, ...]


@dataclass(frozen=True)
class TransactionRef:
    """A paged balance transaction of prepaid credit: its id, source id and type."""

    id: str
    source_id: str | None
    type: str


@dataclass(frozen=True)
class MissingCounterpart:
    """A Stripe object without its balance transaction, or a balance transaction without one."""

    object_id: str | None
    balance_transaction_id: str | None
    detail: str


def _of_object(moved: MovedObject, paged: Mapping[str, TransactionRef]) -> list[MissingCounterpart]:
    if not moved.balance_transaction_ids:
        detail = f"the {moved.kind} {moved.id} names no balance transaction"
        return [MissingCounterpart(moved.id, None, detail)]
    return [
        MissingCounterpart(
            moved.id,
            named,
            f"the {moved.kind} {moved.id} names {named}, which the run did not page",
        )
        for named in moved.balance_transaction_ids
        if named not in paged
    ]


def missing_counterparts(
    moved: Iterable[MovedObject], transactions: Iterable[TransactionRef]
) -> list[MissingCounterpart]:
    """Return what lacks its counterpart, in either direction.

    Args:
        moved: the succeeded top-ups, refunds and disputes the run read.
        transactions: the balance transactions the run paged that belong to prepaid credit (a
            top-up's charge, a refund or a dispute of one); others are no business of this check.

    Returns:
        First the objects' gaps in their order, then the transactions no object names.
    """
    objects = list(moved)
    paged = {transaction.id: transaction for transaction in transactions}
    found = [gap for one in objects for gap in _of_object(one, paged)]
    named = {txn for one in objects for txn in one.balance_transaction_ids}
    for transaction in paged.values():
        if transaction.id not in named:
            detail = (
                f"the {transaction.type} balance transaction {transaction.id} "
                f"(source {transaction.source_id or 'none'}) is named by no top-up, refund or "
                "dispute the run read"
            )
            found.append(MissingCounterpart(None, transaction.id, detail))
    return found
