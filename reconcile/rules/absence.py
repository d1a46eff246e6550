"""When a Moesif read proves a row absent: only complete answers, and only after a targeted read.

Moesif's billing-reports read has no pagination and may cut a large answer off without saying
so. An answer holding ``RECONCILE_MOESIF_READ_CAP`` rows or more is taken as cut off and its
window is read again in halves, down to one second; a row a complete read of its period lacks
is only a suspect until a second, targeted read (its company, a narrow window around its time)
lacks it as well.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

NARROWEST_WINDOW = timedelta(seconds=1)
"""A billing-report window this short is never narrowed further."""

TARGET_MARGIN = timedelta(minutes=1)
"""How far either side of a suspect row's time its targeted read reaches."""


def cut_off(answer_rows: int, read_cap: int) -> bool:
    """Whether an answer of ``answer_rows`` rows may have been cut off by Moesif.

    Counted as Moesif sent it, before rows outside the window asked for are dropped: a Moesif
    that answers every window with the same rows is cut off, whatever window they belong to.
    """
    return answer_rows >= read_cap


def can_narrow(since: datetime, until: datetime) -> bool:
    """Whether the window ``[since, until)`` can be read again in halves (longer than 1 s)."""
    return until - since > NARROWEST_WINDOW


@dataclass(frozen=True)
class Suspect:
    """A stored ledger row that a complete read of its period did not return."""

    moesif_id: str
    company_id: str | None
    subscription_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class TargetedRead:
    """One read that looks for suspects again: a company (all when ``None``) and a window."""

    company_id: str | None
    since: datetime
    until: datetime
    moesif_ids: frozenset[str]


def targeted_reads(suspects: Iterable[Suspect]) -> list[TargetedRead]:
    """Return the reads that look again for each suspect, around its time, on its company.

    Each suspect gets ``[created_at - TARGET_MARGIN, created_at + TARGET_MARGIN)``; suspects of
    one company and subscription whose windows overlap share one read.
    """
    ordered = sorted(
        suspects,
        key=lambda s: (s.company_id or "", s.subscription_id or "", s.created_at, s.moesif_id),
    )
    reads: list[TargetedRead] = []
    group: tuple[str | None, str | None] | None = None
    for suspect in ordered:
        since = suspect.created_at - TARGET_MARGIN
        until = suspect.created_at + TARGET_MARGIN
        key = (suspect.company_id, suspect.subscription_id)
        if reads and key == group and since <= reads[-1].until:
            last = reads[-1]
            reads[-1] = TargetedRead(
                last.company_id, last.since, until, last.moesif_ids | {suspect.moesif_id}
            )
            continue
        group = key
        reads.append(TargetedRead(suspect.company_id, since, until, frozenset({suspect.moesif_id})))
    return reads


def concluded_gone(suspects: Iterable[Suspect], returned_again: Collection[str]) -> list[str]:
    """Return the ``moesif_id`` of each suspect its targeted read did not return either.

    Only these may be marked gone; a suspect returned again was left out of one read only.
    """
    return sorted({s.moesif_id for s in suspects if s.moesif_id not in returned_again})


@dataclass(frozen=True)
class DroppedRow:
    """A ledger row marked gone: its Moesif id and when a read last returned it."""

    moesif_id: str
    last_seen_at: datetime


def dropped_row_detail(detail: str | None, dropped: DroppedRow) -> str:
    """Return a finding's detail naming the Moesif row that held its movement and is gone."""
    seen = dropped.last_seen_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    named = (
        f"Moesif no longer returns row {dropped.moesif_id} that held it (last seen {seen}; "
        "a targeted read lacked it too)"
    )
    return f"{detail}; {named}" if detail else named
