"""Before a posting's first send: the rows Moesif holds now that carry its transaction id.

A posting nobody ever sent may still be in Moesif: another integration (an older webhook, a
person) wrote a row under the same transaction id after the snapshot was last read, or the run's
own read of Moesif left the row out. Either way, posting would grant the credit twice. So before
the first send the engine reads Moesif itself, on every company, from an hour before the Stripe
movement up to now, and asks :func:`reconcile.rules.destination.placed` what the rows it finds
mean: held where it belongs (nothing sent), on another subscription (``misapplied``, nothing
sent), or absent (send it).

Two ways to read: :class:`ReadEach` reads around each posting (the live path posts one movement
at a time, just after it happened), :class:`ReadOnce` reads once for a batch (a nightly run's
postings, which may lie days back and must not cost a full read each).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from reconcile.domain.values import Entry
from reconcile.moesif.client import MoesifClient
from reconcile.posting.read_back import MARGIN
from reconcile.rules.destination import Placed


class FirstRead(Protocol):
    """Returns the rows Moesif holds now that carry an entry's transaction id, wherever."""

    def __call__(self, entry: Entry, intent_at: datetime) -> list[Placed]:
        """The rows carrying ``entry``'s transaction id; ``intent_at``: when it was recorded.

        Raises:
            ReconcileError: Moesif could not be read; nothing may be sent.
        """
        ...


def carrying(
    raws: Iterable[Mapping[str, Any]], transaction_ids: Iterable[str]
) -> dict[str, list[Placed]]:
    """Return, per transaction id asked for, the raw billing-report rows that carry it.

    Only a row's id, place and transaction id are looked at: a row another integration wrote
    counts even when its amount or time could not be read.
    """
    wanted = set(transaction_ids)
    found: dict[str, list[Placed]] = {}
    for raw in raws:
        carried = _text(raw.get("transaction_id"))
        if carried is None or carried not in wanted:
            continue
        found.setdefault(carried, []).append(
            Placed(
                moesif_id=_text(raw.get("_id")) or "(no id)",
                company_id=_text(raw.get("company_id")),
                subscription_id=_text(raw.get("subscription_id")),
            )
        )
    return found


def read_from(entry: Entry, intent_at: datetime) -> datetime:
    """Where a first read starts: an hour before the movement (or the intent, if unknown)."""
    return min(entry.occurred_at or intent_at, intent_at) - MARGIN


class ReadEach:
    """Reads Moesif around each posting, on every company."""

    def __init__(self, moesif: MoesifClient, clock: Callable[[], datetime]) -> None:
        """Read through ``moesif`` up to ``clock()`` and a minute."""
        self._moesif = moesif
        self._clock = clock

    def __call__(self, entry: Entry, intent_at: datetime) -> list[Placed]:
        """The rows carrying ``entry``'s transaction id, read now."""
        until = self._clock() + timedelta(minutes=1)
        raws = self._moesif.billing_reports(read_from(entry, intent_at), until)
        return carrying(raws, [entry.transaction_id]).get(entry.transaction_id, [])


class ReadOnce:
    """Reads Moesif once, on every company, for a batch of entries known in advance."""

    def __init__(
        self, moesif: MoesifClient, clock: Callable[[], datetime], entries: Sequence[Entry]
    ) -> None:
        """Read, at the first question, from the earliest of ``entries`` up to now."""
        self._moesif = moesif
        self._clock = clock
        self._entries = entries
        self._found: dict[str, list[Placed]] | None = None

    def __call__(self, entry: Entry, intent_at: datetime) -> list[Placed]:
        """The rows carrying ``entry``'s transaction id, as the batch's one read found them."""
        if self._found is None:
            now = self._clock()
            since = min((read_from(each, now) for each in self._entries), default=now - MARGIN)
            raws = self._moesif.billing_reports(
                min(since, read_from(entry, intent_at)), now + timedelta(minutes=1)
            )
            self._found = carrying(raws, [each.transaction_id for each in self._entries])
        return self._found.get(entry.transaction_id, [])


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
