"""Rule 4: entries without a ledger row go to the posting rule; currencies of matched entries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from reconcile.domain.money import format_major
from reconcile.domain.vocab import Action, Category
from reconcile.matching.findings import finding_rows, pair_sides
from reconcile.matching.sides import Side, text_values
from reconcile.rules.destination import UNCHECKED, Movement, Subscription, Verdict, destination


def unmatched_findings(
    entries: pd.DataFrame,
    currencies: Mapping[str, str | None],
    companies: Mapping[str, str | None],
) -> pd.DataFrame:
    """Rule 4: entries without a ledger row go to the posting rule: posted, or why not."""
    entry = entries[entries["_in_window"]].reset_index(drop=True)
    verdicts = [
        destination(
            Movement(
                currency=currency,
                company_id=company,
                subscription_id=subscription,
                transaction_id=transaction_id,
                unmapped_reason=reason,
            ),
            _subscription_of(subscription, currencies, companies),
            carried_by=() if carried is None else (carried,),
        )
        for transaction_id, currency, company, subscription, reason, carried in zip(
            entry["transaction_id"],
            entry["currency"],
            entry["company_id"],
            entry["subscription_id"],
            entry["unmapped_reason"],
            entry["carried_elsewhere"],
            strict=True,
        )
    ]
    parts = [_missing_in_moesif(entry, verdicts)]
    for category in (Category.UNMAPPED_CUSTOMER, Category.CURRENCY_MISMATCH):
        mask = np.array([verdict.category == category for verdict in verdicts], dtype=bool)
        reasons = [verdict.reason for verdict in verdicts if verdict.category == category]
        parts.append(finding_rows(category, Action.FLAGGED, entry[mask], None, reasons))
    return pd.concat(parts, ignore_index=True)


def _subscription_of(
    subscription_id: str | None,
    currencies: Mapping[str, str | None],
    companies: Mapping[str, str | None],
) -> Subscription | None:
    """Return what the run knows of a subscription, as the posting rule takes it."""
    if subscription_id is None:
        return UNCHECKED
    if subscription_id in currencies and currencies[subscription_id] is None:
        return None
    return Subscription(
        currency=_lower(currencies.get(subscription_id)),
        company_id=companies.get(subscription_id),
    )


def _missing_in_moesif(entry: pd.DataFrame, verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """Rule 4: a mapped entry with no ledger row, which the run should post.

    Not while a misapplied row names it: moving that row settles both, and posting as well
    would credit the movement twice.
    """
    wanted = [verdict.posts or verdict.category == Category.MISAPPLIED for verdict in verdicts]
    held = [verdict.category == Category.MISAPPLIED for verdict in verdicts]
    held = [kept for kept, chosen in zip(held, wanted, strict=True) if chosen]
    chosen = entry[np.array(wanted, dtype=bool)]
    details = [
        f"no ledger row; {entry_type} of {format_major(minor, currency)} {currency.upper()}"
        + (
            "; not posted: a ledger row carrying this transaction id sits on another company "
            "or subscription (see its misapplied finding)"
            if kept
            else ""
        )
        for entry_type, minor, currency, kept in zip(
            chosen["entry_type"], chosen["amount_minor"], chosen["currency"], held, strict=True
        )
    ]
    found = finding_rows(Category.MISSING_IN_MOESIF, Action.WOULD_POST, chosen, None, details)
    found.loc[np.array(held, dtype=bool), "action"] = Action.FLAGGED.value
    return found


def matched_currency_mismatches(
    entries: Side,
    rows: Side,
    matched: pd.DataFrame,
    currencies: Mapping[str, str | None],
) -> pd.DataFrame:
    """Rule 4: a matched entry whose currency differs from its subscription's known currency."""
    pairs = matched[entries.inside[matched["_e"].to_numpy()]]
    positions = pairs["_e"].to_numpy()
    subscriptions = entries.names["subscription_id"]
    theirs = np.array(
        [_lower(currencies.get(name)) for name in subscriptions.tolist()] + [None], dtype=object
    )[entries.codes["subscription_id"][positions]]
    ours = text_values(entries.frame["currency"].iloc[entries.source[positions]])
    differs = pd.notna(theirs) & (theirs != ours)  # then ignore case where they differ
    differs[differs] = [
        _lower(mine) != known for mine, known in zip(ours[differs], theirs[differs], strict=True)
    ]
    entry, row = pair_sides(entries, rows, pairs[differs])
    _, known = _subscription_currency(entry, currencies)
    keep = _differs(entry, known)
    return _currency_findings(entry[keep], row[keep], known[keep], posted=True)


def _lower(text: object) -> str | None:
    """Return text lowercased, ``None`` when absent."""
    return None if text is None or text != text else str(text).lower()  # NaN != NaN


def _currency_findings(
    entry: pd.DataFrame, row: pd.DataFrame | None, known: pd.Series, *, posted: bool
) -> pd.DataFrame:
    """Build currency_mismatch findings, saying whether the ledger holds the movement."""
    note = "ledger holds it" if posted else "not posted"
    details = [
        f"payment in {currency.upper()}, subscription {sub} in {str(theirs).upper()}; {note}"
        for currency, sub, theirs in zip(
            entry["currency"], entry["subscription_id"], known, strict=True
        )
    ]
    return finding_rows(Category.CURRENCY_MISMATCH, Action.FLAGGED, entry, row, details)


def _subscription_currency(
    entry: pd.DataFrame, currencies: Mapping[str, str | None]
) -> tuple[npt.NDArray[np.bool_], pd.Series]:
    """Return whether each entry's subscription was looked up, and its currency if known."""
    lookup = pd.Series(list(currencies.values()), index=list(currencies.keys()), dtype=object)
    subscriptions = entry["subscription_id"]
    looked_up = subscriptions.isin(lookup.index).to_numpy(dtype=bool)
    known = subscriptions.map(lookup).astype(object)
    return looked_up, known.where(known.notna(), None)


def _differs(entry: pd.DataFrame, known: pd.Series) -> npt.NDArray[np.bool_]:
    """Return where a known subscription currency differs from the entry's currency."""
    theirs = known.str.lower()
    ours = entry["currency"].str.lower()
    return (theirs.notna() & (theirs != ours)).to_numpy(dtype=bool)
