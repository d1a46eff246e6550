"""Whether Moesif's running balance for one subscription adds up, row after row (section 11).

The chained figure is ``current_balance``. Moesif's balance has three figures per row:
``current_balance``, ``pending_activity`` and ``available_balance`` (the current balance plus
the pending activity). ``balance_changes`` are what moved the current balance from its
beginning to its ending; pending activity is an estimate Moesif recomputes between reports and
that no change accounts for, so the available balance would show breaks that are not errors.
The subscription's reported balance is compared by its ``current_balance`` for the same reason.

Every gap is signed the same way: the figure found minus the figure it should equal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from reconcile.domain.money import format_major

BALANCE_BREAK = "balance_break"
"""The finding's category (contract section 6)."""

CARRIED = "carried"
"""A row's beginning balance differs from the previous row's ending balance."""
CHANGES = "changes"
"""A row's beginning balance plus its balance changes differs from its ending balance."""
REPORTED = "reported"
"""The balance Moesif reports for the subscription differs from the last row's ending."""


@dataclass(frozen=True)
class Balance:
    """One of a billing report's balances, in minor units."""

    current: int
    pending: int
    available: int


@dataclass(frozen=True)
class BalanceRow:
    """A Moesif billing-report row as the chain sees it (usage rows included).

    ``beginning`` and ``ending`` are ``None`` when the row carries no balance; ``changes`` are
    its ``balance_changes`` amounts in minor units.
    """

    moesif_id: str
    sequence_id: int | None
    created_at: datetime
    currency: str
    beginning: Balance | None
    ending: Balance | None
    changes: tuple[int, ...] = ()


@dataclass(frozen=True)
class BalanceBreak:
    """One place where the running balance does not add up.

    ``earlier_id`` is the row whose figure was expected (the previous row for ``carried``, the
    row itself for ``changes``, the last row for ``reported``); ``later_id`` the row whose
    figure differs, or ``"reported"``.
    """

    kind: str
    earlier_id: str
    later_id: str
    gap: int
    currency: str
    detail: str


@dataclass(frozen=True)
class ChainCheck:
    """The breaks of one subscription's chain, with how many rows were checked and skipped."""

    breaks: tuple[BalanceBreak, ...]
    checked: int
    skipped: int


@dataclass(frozen=True)
class _Link:
    """A row that takes part in the chain, with its chained figures."""

    row: BalanceRow
    sequence_id: int
    beginning: int
    ending: int


def _link(row: BalanceRow) -> _Link | None:
    if row.sequence_id is None or row.beginning is None or row.ending is None:
        return None
    return _Link(row, row.sequence_id, row.beginning.current, row.ending.current)


def _money(minor: int, currency: str) -> str:
    return f"{format_major(minor, currency)} {currency.upper()}"


def _carried(earlier: _Link, later: _Link) -> BalanceBreak | None:
    gap = later.beginning - earlier.ending
    if gap == 0:
        return None
    currency, earlier_id, later_id = later.row.currency, earlier.row.moesif_id, later.row.moesif_id
    detail = (
        f"row {later_id} begins at {_money(later.beginning, currency)} but row {earlier_id} "
        f"ended at {_money(earlier.ending, currency)}: a gap of {_money(gap, currency)}"
    )
    return BalanceBreak(CARRIED, earlier_id, later_id, gap, currency, detail)


def _changed(link: _Link) -> BalanceBreak | None:
    changes = link.row.changes
    expected = link.beginning + sum(changes)
    gap = link.ending - expected
    if gap == 0:
        return None
    currency, row_id = link.row.currency, link.row.moesif_id
    detail = (
        f"row {row_id} ends at {_money(link.ending, currency)} but its beginning plus its "
        f"{len(changes)} balance changes is {_money(expected, currency)}: "
        f"a gap of {_money(gap, currency)}"
    )
    return BalanceBreak(CHANGES, row_id, row_id, gap, currency, detail)


def _reported(last: _Link, reported: int) -> BalanceBreak | None:
    gap = reported - last.ending
    if gap == 0:
        return None
    currency, row_id = last.row.currency, last.row.moesif_id
    detail = (
        f"Moesif reports {_money(reported, currency)} for the subscription but its last row "
        f"{row_id} ended at {_money(last.ending, currency)}: a gap of {_money(gap, currency)}"
    )
    return BalanceBreak(REPORTED, row_id, REPORTED, gap, currency, detail)


def balance_breaks(rows: Iterable[BalanceRow], reported: int | None) -> ChainCheck:
    """Return where one subscription's running balance does not add up.

    Args:
        rows: the subscription's billing-report rows, in any order; they are chained by
            ``sequence_id`` (then time and id). Rows without a sequence id or without both
            balances take no part and are counted as skipped, never as breaks.
        reported: the ``current_balance`` Moesif reports for the subscription now, in minor
            units, or ``None`` when it is not known (then only the rows are checked).

    Returns:
        The breaks in chain order: for each row a ``carried`` break against the row before
        it, then a ``changes`` break of its own, and last a ``reported`` break.
    """
    given = list(rows)
    links = [link for link in map(_link, given) if link is not None]
    chain = sorted(
        links, key=lambda link: (link.sequence_id, link.row.created_at, link.row.moesif_id)
    )
    breaks: list[BalanceBreak | None] = []
    for position, link in enumerate(chain):
        if position:
            breaks.append(_carried(chain[position - 1], link))
        breaks.append(_changed(link))
    if chain and reported is not None:
        breaks.append(_reported(chain[-1], reported))
    found = tuple(found for found in breaks if found is not None)
    return ChainCheck(found, checked=len(chain), skipped=len(given) - len(chain))
