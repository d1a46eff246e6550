"""A customer's statement: every movement in order, the running balance, the tie-out (section 11).

A Stripe payment, refund or dispute stands on one line beside the Moesif row it produced (the
row of its ``transaction_id``). The line moves the balance by what Stripe moved, so the
statement shows what the customer is owed; where the ledger recorded something else (nothing,
another amount, the same movement again) the line's difference is what the balance needs, signed
as the drift report's ``delta`` (positive: the customer is owed credit), and is named by the
open finding of its ``transaction_id``. Moesif's own rows (usage per day, manual credits and
debits, promotions, corrections) move it by what the ledger holds.

The tie-out: opening plus movements equals closing equals what Moesif reports. Its differences
are the lines' differences, what the ledger's own rows leave unexplained between opening and
closing, and the gap between closing and the reported balance; the last two are named by the
subscription's ``balance_break`` finding, when one is open.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time

from reconcile.domain.money import format_major

COLUMNS = (
    "date",
    "kind",
    "stripe_id",
    "transaction_id",
    "description",
    "amount",
    "currency",
    "balance_after",
    "finding_id",
)
"""The statement CSV's columns, in order."""

AMOUNT_COLUMNS = frozenset({"amount", "balance_after"})
"""Columns that hold signed decimal amounts (left as they are when cells are neutralised)."""

OPENING, CLOSING, USAGE = "opening", "closing", "usage"
STRIPE_KINDS = ("top_up", "refund", "dispute", "dispute_reinstated")
"""Kinds of the lines a Stripe movement stands on."""
KINDS = (
    OPENING,
    *STRIPE_KINDS,
    USAGE,
    "manual_credit",
    "manual_debit",
    "promotion",
    "correction",
    CLOSING,
)
"""Every kind a statement line has, in the contract's order."""

_LABELS = {
    OPENING: "Opening balance",
    "top_up": "Top-up",
    "refund": "Refund",
    "dispute": "Dispute",
    "dispute_reinstated": "Dispute reinstated",
    USAGE: "Usage",
    "manual_credit": "Manual credit",
    "manual_debit": "Manual debit",
    "promotion": "Promotion",
    "correction": "Correction",
    CLOSING: "Closing balance",
}

LEDGER, REPORTED = "ledger", "reported"
"""Subjects of the tie-out's differences that are about no single movement."""


@dataclass(frozen=True)
class StripeMovement:
    """A Stripe movement of the subscription, ``amount`` signed in minor units (debit: negative)."""

    kind: str
    stripe_id: str
    transaction_id: str
    amount: int
    at: datetime
    description: str = ""


@dataclass(frozen=True)
class LedgerMovement:
    """A Moesif balance-transaction row of the subscription, ``amount`` signed in minor units."""

    kind: str
    moesif_id: str
    transaction_id: str | None
    amount: int
    at: datetime
    description: str = ""


@dataclass(frozen=True)
class StatementLine:
    """One line of a statement; amounts in minor units.

    ``amount`` is what the line moves the balance by (``None`` on the opening and closing
    lines), ``ledger_amount`` what Moesif's ledger recorded for it (``None``: nothing).
    """

    on: date
    kind: str
    stripe_id: str | None
    transaction_id: str | None
    description: str
    amount: int | None
    ledger_amount: int | None
    balance_after: int
    finding_id: str | None


@dataclass(frozen=True)
class Difference:
    """Why the statement does not tie out by ``amount`` minor units (positive: owed credit).

    ``subject`` is the movement's ``transaction_id``, ``"ledger"`` or ``"reported"``.
    """

    subject: str
    amount: int
    finding_id: str | None
    detail: str


@dataclass(frozen=True)
class TieOut:
    """Opening plus movements against closing and what Moesif reports, with each difference."""

    opening: int
    movements: int
    closing: int
    reported: int | None
    differences: tuple[Difference, ...]

    @property
    def expected_closing(self) -> int:
        """The opening balance plus the movements."""
        return self.opening + self.movements

    @property
    def ties_out(self) -> bool:
        """Whether nothing differs (differences never cancel each other out)."""
        return not self.differences


@dataclass(frozen=True)
class Statement:
    """A subscription's statement in one currency."""

    currency: str
    lines: tuple[StatementLine, ...]
    tie_out: TieOut


@dataclass(frozen=True)
class _Entry:
    """A movement line before its running balance is known."""

    at: datetime
    rank: int
    kind: str
    stripe_id: str | None
    transaction_id: str | None
    description: str
    amount: int
    ledger_amount: int | None
    moesif_id: str | None = None


def _stripe_entries(movement: StripeMovement, rows: list[LedgerMovement]) -> Iterable[_Entry]:
    """Yield a Stripe movement's line, then a line for each further row that records it again."""
    description = movement.description or _LABELS.get(movement.kind, movement.kind)
    first = rows[0].amount if rows else None
    line = _Entry(
        at=movement.at,
        rank=0,
        kind=movement.kind,
        stripe_id=movement.stripe_id,
        transaction_id=movement.transaction_id,
        description=description,
        amount=movement.amount,
        ledger_amount=first,
    )
    yield line
    for again in rows[1:]:
        again_description = f"{description}, recorded again"
        yield replace(
            line, at=again.at, description=again_description, amount=0, ledger_amount=again.amount
        )


def _entries(
    stripe: Iterable[StripeMovement], ledger: Iterable[LedgerMovement], usage: Mapping[date, int]
) -> list[_Entry]:
    movements = {movement.transaction_id: movement for movement in stripe}
    produced: dict[str, list[LedgerMovement]] = {tid: [] for tid in movements}
    entries = []
    for row in sorted(ledger, key=lambda row: (row.at, row.moesif_id)):
        if row.transaction_id in produced:
            produced[row.transaction_id].append(row)
            continue
        description = row.description or _LABELS.get(row.kind, row.kind)
        entries.append(
            _Entry(
                row.at,
                0,
                row.kind,
                None,
                row.transaction_id,
                description,
                row.amount,
                row.amount,
                row.moesif_id,
            )
        )
    for tid, movement in movements.items():
        entries.extend(_stripe_entries(movement, produced[tid]))
    for day, amount in usage.items():
        at = datetime.combine(day, time.max, tzinfo=UTC)
        entries.append(_Entry(at, 1, USAGE, None, None, f"Usage on {day}", amount, amount))
    return sorted(entries, key=lambda e: (e.at.date(), e.rank, e.at, e.kind))


def _money(minor: int, currency: str) -> str:
    return f"{format_major(minor, currency)} {currency.upper()}"


def _line_difference(
    entry: _Entry, findings: Mapping[str, str], currency: str
) -> Difference | None:
    recorded = entry.ledger_amount or 0
    if entry.amount == recorded or entry.transaction_id is None:
        return None
    what = (
        f"{_LABELS.get(entry.kind, entry.kind).lower()} {entry.stripe_id or entry.transaction_id}"
    )
    if entry.ledger_amount is None:
        detail = f"the {what} of {_money(entry.amount, currency)} is not in the ledger"
    elif entry.amount == 0:
        detail = f"the ledger records the {what} again ({_money(recorded, currency)})"
    else:
        detail = (
            f"the ledger records {_money(recorded, currency)} for the {what} "
            f"of {_money(entry.amount, currency)}"
        )
    tid = entry.transaction_id
    return Difference(tid, entry.amount - recorded, findings.get(tid), detail)


def _balance_differences(
    opening: int,
    recorded: int,
    closing: int,
    reported: int | None,
    finding: str | None,
    currency: str,
) -> list[Difference]:
    differences = []
    reached = opening + recorded
    if reached != closing:
        detail = (
            f"the ledger's rows take the opening balance to {_money(reached, currency)} "
            f"but it closes at {_money(closing, currency)}"
        )
        differences.append(Difference(LEDGER, reached - closing, finding, detail))
    if reported is not None and reported != closing:
        detail = (
            f"the statement closes at {_money(closing, currency)} "
            f"but Moesif reports {_money(reported, currency)}"
        )
        differences.append(Difference(REPORTED, closing - reported, finding, detail))
    return differences


def build_statement(
    *,
    currency: str,
    since: datetime,
    until: datetime,
    opening: int,
    stripe: Iterable[StripeMovement],
    ledger: Iterable[LedgerMovement],
    usage: Mapping[date, int],
    findings: Mapping[str, str],
    closing: int,
    reported: int | None,
    balance_finding_id: str | None = None,
    row_findings: Mapping[str, str] | None = None,
) -> Statement:
    """Return a subscription's statement over ``[since, until)`` and its tie-out.

    Args:
        currency: the subscription's currency; every amount is in its minor units.
        since: the statement's start, the opening line's date.
        until: the statement's end, the closing line's date.
        opening: the balance at ``since``.
        stripe: the subscription's Stripe movements in the window, one per ``transaction_id``.
        ledger: Moesif's balance-transaction rows in the window (usage not included); a row
            the matcher paired with a movement by amount carries that movement's
            ``transaction_id``, so it stands beside it.
        usage: the usage Moesif charged per day, signed (usage burns credit: negative).
        findings: the open finding ids by ``transaction_id``.
        closing: the balance Moesif's ledger holds at ``until``.
        reported: the balance Moesif reports now, or ``None`` when the statement does not run
            up to now (it would include later movements).
        balance_finding_id: the subscription's open ``balance_break`` finding, if any.
        row_findings: the open findings about one ledger row, by its ``moesif_id`` (a manual
            credit no Stripe movement stands behind): its line names it. None of them is a
            difference: such a row moves the balance by what the ledger holds.

    Returns:
        The statement: the opening line, the movements in time order (a day's usage after that
        day's other movements) with the running balance, the closing line, and the tie-out.
    """
    entries = _entries(stripe, ledger, usage)
    lines = [
        StatementLine(
            since.date(), OPENING, None, None, _LABELS[OPENING], None, None, opening, None
        )
    ]
    balance = opening
    by_row = row_findings or {}
    for entry in entries:
        balance += entry.amount
        finding = findings.get(entry.transaction_id) if entry.transaction_id else None
        if finding is None and entry.moesif_id is not None:
            finding = by_row.get(entry.moesif_id)
        lines.append(
            StatementLine(
                entry.at.date(),
                entry.kind,
                entry.stripe_id,
                entry.transaction_id,
                entry.description,
                entry.amount,
                entry.ledger_amount,
                balance,
                finding,
            )
        )
    differences = [d for e in entries if (d := _line_difference(e, findings, currency))]
    recorded = sum(entry.ledger_amount or 0 for entry in entries)
    differences += _balance_differences(
        opening, recorded, closing, reported, balance_finding_id, currency
    )
    unsettled = any(d.subject in (LEDGER, REPORTED) for d in differences)
    lines.append(
        StatementLine(
            until.date(),
            CLOSING,
            None,
            None,
            _LABELS[CLOSING],
            None,
            None,
            closing,
            balance_finding_id if unsettled else None,
        )
    )
    movements = sum(entry.amount for entry in entries)
    tie_out = TieOut(opening, movements, closing, reported, tuple(differences))
    return Statement(currency.lower(), tuple(lines), tie_out)


def statement_rows(statement: Statement) -> list[tuple[str, ...]]:
    """Return the statement's CSV rows in :data:`COLUMNS` order, amounts in major units."""
    currency = statement.currency

    def cell(amount: int | None) -> str:
        return "" if amount is None else format_major(amount, currency)

    return [
        (
            line.on.isoformat(),
            line.kind,
            line.stripe_id or "",
            line.transaction_id or "",
            line.description,
            cell(line.amount),
            currency.upper(),
            cell(line.balance_after),
            line.finding_id or "",
        )
        for line in statement.lines
    ]


def tie_out_lines(statement: Statement) -> list[str]:
    """Return the tie-out as sentences: the sum, then one line per difference."""
    tie, currency = statement.tie_out, statement.currency
    reported = "" if tie.reported is None else f"; Moesif reports {_money(tie.reported, currency)}"
    lines = [
        f"opening {_money(tie.opening, currency)} + movements {_money(tie.movements, currency)} "
        f"= {_money(tie.expected_closing, currency)}; closing {_money(tie.closing, currency)}"
        f"{reported}"
    ]
    for difference in tie.differences:
        named = difference.finding_id or "no open finding"
        lines.append(f"{_money(difference.amount, currency)}: {difference.detail} ({named})")
    return lines
