"""Whether Moesif's running balance for one subscription adds up, row after row (section 11).

The chained figure is ``current_balance``. Moesif's balance has three figures per row:
``current_balance``, ``pending_activity`` and ``available_balance`` (the current balance plus
the pending activity). ``balance_changes`` are what moved the current balance from its
beginning to its ending; pending activity is an estimate Moesif recomputes between reports and
that no change accounts for, so the available balance would show breaks that are not errors.
The subscription's reported balance is compared by its ``current_balance`` for the same reason,
with the ending of the row whose ``sequence_id`` it carries: the last row when it was read.

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
    reported: bool = False
    """Whether the reported balance was compared with a row's ending."""


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


def _reported(link: _Link, reported: int, last: bool) -> BalanceBreak | None:
    gap = reported - link.ending
    if gap == 0:
        return None
    currency, row_id = link.row.currency, link.row.moesif_id
    ended = f"ended at {_money(link.ending, currency)}: a gap of {_money(gap, currency)}"
    if last:
        detail = (
            f"Moesif reports {_money(reported, currency)} for the subscription but its last "
            f"row {row_id} {ended}"
        )
    else:
        detail = (
            f"Moesif reported {_money(reported, currency)} for the subscription at sequence "
            f"{link.sequence_id} but row {row_id} of that sequence {ended}"
        )
    return BalanceBreak(REPORTED, row_id, REPORTED, gap, currency, detail)


def _reported_link(chain: list[_Link], reported_at: int | None) -> _Link | None:
    """Return the row a balance reported at sequence ``reported_at`` must have ended at."""
    if not chain:
        return None
    if reported_at is None:
        return chain[-1]
    at = [link for link in chain if link.sequence_id == reported_at]
    return at[0] if len(at) == 1 else None


def balance_breaks(
    rows: Iterable[BalanceRow], reported: int | None, *, reported_at: int | None = None
) -> ChainCheck:
    """Return where one subscription's running balance does not add up.

    Args:
        rows: the subscription's billing-report rows, in any order; they are chained by
            ``sequence_id`` (then time and id). Rows without a sequence id or without both
            balances take no part and are counted as skipped, never as breaks.
        reported: the ``current_balance`` Moesif reports for the subscription, in minor units,
            or ``None`` when it is not known (then only the rows are checked).
        reported_at: the ``sequence_id`` Moesif reported that balance at: it must equal the
            ending of the row of that sequence (the last row when the balance was read). A
            sequence no single row carries (rows Moesif applied after the snapshot's) is not
            compared. ``None``: the balance is the last row's.

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
    compared = _reported_link(chain, reported_at)
    if compared is not None and reported is not None:
        breaks.append(_reported(compared, reported, last=compared is chain[-1]))
    found = tuple(found for found in breaks if found is not None)
    return ChainCheck(
        found,
        checked=len(chain),
        skipped=len(given) - len(chain),
        reported=compared is not None and reported is not None,
    )


def read_again_first(check: ChainCheck, *, read_after_rows: bool) -> bool:
    """Whether a ``reported`` break must be confirmed by reading the balance again first.

    A balance kept from before the rows were last read may be older than their figures (Moesif
    may have changed a row since): a disagreement then proves nothing until a balance read now
    says the same. A balance read after the rows is believed as it is.
    """
    return not read_after_rows and any(found.kind == REPORTED for found in check.breaks)
