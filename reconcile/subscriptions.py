"""Moesif subscriptions' currencies: one cache, in the run and in the snapshot, read weekly.

Every run needs the currency of each subscription it touches (to read amounts and to catch
currency mismatches). Reading them all from Moesif every night spends the request budget that the
live webhook shares, so a currency read once is kept; :mod:`reconcile.rules.subscription_currency`
decides for how long. A subscription Moesif does not know is never kept: it is asked again next
time, as it may have been created since.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import NamedTuple

import pandas as pd
from sqlalchemy.orm import Session

from reconcile.db.subscriptions import (
    KeptCurrency,
    keep_currency,
    kept_currencies,
    kept_currency,
    kept_frame,
)
from reconcile.domain.money import is_iso_currency, round_to_minor
from reconcile.frames import objects
from reconcile.moesif.client import MoesifClient
from reconcile.moesif.rows import decimal_text
from reconcile.posting.entry import AmountUnit
from reconcile.rules.subscription_currency import (
    MAX_AGE,
    disagrees,
    kept_are_fresh,
    kept_is_fresh,
)


class Known(NamedTuple):
    """A subscription Moesif has: its currency and its company (``None`` when Moesif names none).

    A named tuple: a run makes one per subscription paid into, a hundred thousand at a time.
    """

    currency: str | None
    company_id: str | None = None


class SubscriptionDirectory:
    """Answers whether a subscription exists, its currency and company, from the snapshot or Moesif.

    A run keeps one for its length. ``serve`` makes one per decision with ``fresh_reads``, so
    what it reads from Moesif is read then, never an answer its long-lived client kept, and it
    reads only the kept row it needs.
    """

    def __init__(
        self,
        client: MoesifClient,
        clock: Callable[[], datetime],
        max_age: timedelta = MAX_AGE,
        *,
        fresh_reads: bool = False,
        amount_unit: AmountUnit | None = None,
    ) -> None:
        """Read through ``client`` what the snapshot does not hold fresh enough.

        With ``amount_unit``, how Moesif writes amounts (``MOESIF_AMOUNT_UNIT``), the available
        balance of each subscription read is kept with its currency, in minor units (the run
        does; without it, a balance kept before stays as it was).
        """
        self._client = client
        self._amount_unit = amount_unit
        self._clock = clock
        self._max_age = max_age
        self._fresh_reads = fresh_reads
        self._answers: dict[str, Known | None] = {}
        self._kept: dict[str, KeptCurrency] | None = None
        self._kept_some: dict[str, KeptCurrency] = {}
        self._asked: set[str] = set()

    def lookup(
        self, session: Session, subscription_id: str, expect: str | None = None
    ) -> Known | None:
        """Return the subscription's currency and company, or ``None`` when Moesif has none such.

        A subscription kept without its company (kept before companies were) is read again. A
        kept currency that differs from ``expect`` (the payment's) is read again from Moesif
        before it is believed, so a subscription whose currency was corrected is seen at once.
        Writes what it reads from Moesif through ``session``; the caller commits.
        """
        if subscription_id in self._answers:
            answer = self._answers[subscription_id]
            if answer is None or not disagrees(answer.currency, expect):
                return answer
        else:
            kept = self._kept_currency(session, subscription_id)
            if (
                kept is not None
                and kept.company_id is not None
                and kept_is_fresh(
                    kept.currency,
                    kept.fetched_at,
                    now=self._clock(),
                    expect=expect,
                    max_age=self._max_age,
                )
            ):
                self._answers[subscription_id] = Known(kept.currency, kept.company_id)
                return self._answers[subscription_id]
        self._answers[subscription_id] = self._read(session, subscription_id)
        return self._answers[subscription_id]

    def lookup_all(
        self, session: Session, subscriptions: Sequence[tuple[str, str | None]]
    ) -> dict[str, Known | None]:
        """Return :meth:`lookup` of each (subscription id, expected currency), by id.

        The snapshot's kept rows of those not answered yet are read together first, and only
        theirs: the work follows the subscriptions asked about, not every one ever kept.
        """
        unanswered = [sid for sid, _ in subscriptions if sid not in self._answers]
        if not unanswered or self._kept is not None or self._fresh_reads:
            return {sid: self.lookup(session, sid, expect=cur) for sid, cur in subscriptions}
        kept = pd.DataFrame.from_records(
            list(subscriptions), columns=["subscription_id", "expect"]
        ).merge(kept_frame(session, unanswered), on="subscription_id", how="left")
        self._asked.update(unanswered)
        sids, currencies, expects, companies = (
            objects(kept[name]) for name in ("subscription_id", "currency", "expect", "company_id")
        )
        # a kept answer fresh enough (most of them) is taken at once, the others looked up
        fresh = (
            kept["company_id"].notna().to_numpy(dtype=bool)
            & kept_are_fresh(
                currencies,
                kept["fetched_at"],
                now=self._clock(),
                expect=expects,
                max_age=self._max_age,
            )
            & ~kept["subscription_id"].isin(list(self._answers)).to_numpy(dtype=bool)
            & ~kept["subscription_id"].duplicated().to_numpy(dtype=bool)  # asked again: looked up
        )
        found = dict[str, Known | None]()
        for sid, currency, expect, company, fetched_at, taken in zip(
            sids,
            currencies,
            expects,
            companies,
            kept["fetched_at"].tolist(),
            fresh.tolist(),
            strict=True,
        ):
            if taken:
                found[sid] = self._answers[sid] = Known(currency, company)
                continue
            if not pd.isna(fetched_at):  # kept but stale: looked up from what is kept
                self._kept_some[sid] = KeptCurrency(currency, fetched_at.to_pydatetime(), company)
            found[sid] = self.lookup(session, sid, expect=expect)
        return found

    def currency(self, session: Session, subscription_id: str) -> str | None:
        """Return the subscription's currency when it is known."""
        known = self.lookup(session, subscription_id)
        return known.currency if known is not None else None

    def read_again(self, session: Session, subscription_id: str) -> Known | None:
        """Read the subscription from Moesif now, whatever is kept or was read before; keep it.

        One request (never an answer the client kept). Writes through ``session``; the caller
        commits.
        """
        self._answers[subscription_id] = self._read(session, subscription_id, fresh=True)
        return self._answers[subscription_id]

    def _kept_currency(self, session: Session, subscription_id: str) -> KeptCurrency | None:
        """Return the snapshot's kept currency; a run reads all of them in one query, once.

        Those :meth:`lookup_all` read already are not read again. A directory of ``serve``
        (``fresh_reads``) asks about one subscription: it reads one row.
        """
        if self._fresh_reads:
            return kept_currency(session, subscription_id)
        if self._kept is None and subscription_id in self._asked:
            return self._kept_some.get(subscription_id)
        if self._kept is None:
            self._kept = kept_currencies(session)
        return self._kept.get(subscription_id)

    def _read(self, session: Session, subscription_id: str, *, fresh: bool = False) -> Known | None:
        found = self._client.subscription(subscription_id, fresh=fresh or self._fresh_reads)
        if found is None:
            return None
        currency = found.currency.lower() if found.currency else None
        keep_currency(
            session,
            subscription_id,
            currency,
            self._clock(),
            found.company_id,
            None
            if self._amount_unit is None
            else available_balance_minor(found.available_balance, currency, self._amount_unit),
            (decimal_text(found.current_balance), found.sequence_id),
        )
        return Known(currency, found.company_id)


def available_balance_minor(
    available: Decimal, currency: str | None, amount_unit: AmountUnit
) -> int | None:
    """Return Moesif's available balance in minor units, or ``None`` without a known currency."""
    if currency is None or not is_iso_currency(currency):
        return None
    if amount_unit == "minor":
        return int(available.to_integral_value(rounding=ROUND_HALF_EVEN))
    return round_to_minor(available, currency)
