"""Moesif subscriptions' currencies, kept in the snapshot so each is read about once a week.

Every run needs the currency of each subscription it touches (to read amounts and to catch
currency mismatches). Reading them all from Moesif every night spends the request budget that the
live webhook shares, so a currency read once is kept for ``max_age``. A subscription Moesif does
not know is never kept: it is asked again next time, as it may have been created since.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from reconcile.db.models import MoesifSubscription
from reconcile.moesif.client import MoesifClient

MAX_AGE = timedelta(days=7)
"""How long a subscription's currency read from Moesif is trusted."""


@dataclass(frozen=True)
class Known:
    """A subscription Moesif has, and its currency (``None`` when Moesif names none)."""

    currency: str | None


class SubscriptionDirectory:
    """Answers whether a subscription exists and in which currency, from the snapshot or Moesif."""

    def __init__(
        self,
        client: MoesifClient,
        clock: Callable[[], datetime],
        max_age: timedelta = MAX_AGE,
    ) -> None:
        """Read through ``client`` what the snapshot does not hold fresh enough."""
        self._client = client
        self._clock = clock
        self._max_age = max_age
        self._answers: dict[str, Known | None] = {}

    def lookup(
        self, session: Session, subscription_id: str, expect: str | None = None
    ) -> Known | None:
        """Return the subscription's currency, or ``None`` when Moesif has no such subscription.

        A kept currency that differs from ``expect`` (the payment's) is read again from Moesif
        before it is believed, so a subscription whose currency was corrected is seen at once.
        Writes what it reads from Moesif through ``session``; the caller commits.
        """
        known = self._answers.get(subscription_id)
        if subscription_id not in self._answers or (
            expect is not None and known is not None and known.currency != expect.lower()
        ):
            self._answers[subscription_id] = self._fetch(session, subscription_id, expect)
        return self._answers[subscription_id]

    def currency(self, session: Session, subscription_id: str) -> str | None:
        """Return the subscription's currency when it is known."""
        known = self.lookup(session, subscription_id)
        return known.currency if known is not None else None

    def _fetch(
        self, session: Session, subscription_id: str, expect: str | None = None
    ) -> Known | None:
        now = self._clock()
        stored = session.get(MoesifSubscription, subscription_id)
        fresh = stored is not None and now - stored.fetched_at < self._max_age
        agrees = expect is None or (stored is not None and stored.currency == expect.lower())
        if stored is not None and fresh and agrees and subscription_id not in self._answers:
            return Known(stored.currency)
        found = self._client.subscription(subscription_id)
        if found is None:
            return None
        currency = found.currency.lower() if found.currency else None
        session.merge(
            MoesifSubscription(subscription_id=subscription_id, currency=currency, fetched_at=now)
        )
        return Known(currency)
