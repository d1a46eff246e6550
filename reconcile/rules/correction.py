"""Which balance transactions settle a finding, when the correction is determined (section 10a).

:func:`plan` answers, for one finding, either the entries that settle it or why none is posted
automatically. A correction moves the subscription's balance by exactly the finding's section 7
``delta``: a credit when the customer is owed, a debit when Moesif holds too much. A
``misapplied`` row is moved: taken back where it sits, and the Stripe movement put where it
belongs. Each entry's ``transaction_id`` is ``corr_`` and the finding id (``_2`` for the second
leg of a move), so the exactly-once engine posts a correction at most once however it is retried;
:func:`corrected_finding` reads that id back. :func:`confirmation` says what would be posted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from reconcile.domain.money import is_iso_currency, minor_amount_problem, readable_amount
from reconcile.domain.values import Entry
from reconcile.domain.vocab import Category, EntryType
from reconcile.rules.delta import correction

PREFIX = "corr_"
SECOND_LEG = "_2"
_CORRECTION_ID = re.compile(r"^corr_(F-[0-9a-f]+)(_2)?$")

CORRECTABLE = frozenset(
    {
        Category.AMOUNT_MISMATCH,
        Category.DUPLICATE_IN_MOESIF,
        Category.MISAPPLIED,
        Category.MISSING_IN_STRIPE,
    }
)
"""Categories whose correction is determined (``missing_in_stripe`` once confirmed an error)."""

MANUAL_STEPS: dict[str, str] = {
    Category.MISSING_IN_MOESIF: "usually nothing: the next real run posts it (a refused posting: "
    "fix the cause the detail names, e.g. the subscription). If you post it by hand in Moesif, "
    "use the finding's transaction_id.",
    Category.AMOUNT_MISMATCH: "correct the ledger row carrying that transaction_id to the Stripe "
    "amount and type, or post the correction from here.",
    Category.DUPLICATE_IN_MOESIF: "remove the extra row named by the finding's Moesif row in "
    "Moesif, or post the correcting debit (or credit) from here.",
    Category.MISSING_IN_STRIPE: "find the Stripe movement it stands for: if there is one, give "
    "the row that movement's id as transaction_id; if it is a goodwill credit, ignore the "
    "finding with a note; if it is wrong, confirm it as an error and post the correction.",
    Category.CURRENCY_MISMATCH: "change the Moesif subscription's currency, or refund and "
    "recharge in the right currency in Stripe; the next run then posts the movement.",
    Category.UNMAPPED_CUSTOMER: "set moesif_company_id and moesif_subscription_id in the Stripe "
    "customer's metadata (or give the customer one subscription, or create the subscription "
    "in Moesif); the next run posts the movement.",
    Category.MISAPPLIED: "move the row: remove it where it sits and post it, with the same "
    "transaction_id, where it belongs (both named in the detail), or post the move from here.",
    Category.UNREADABLE: "correct the record in Moesif (a row with a readable amount and time) "
    "or in Stripe; the detail shows it as received. It is never posted while unreadable.",
    Category.MATCHED_BY_AMOUNT: "nothing (informational); giving the row its Stripe id as "
    "transaction_id makes later matches exact.",
    "balance_break": "compare the two Moesif rows the detail names in Moesif; nothing is posted "
    "automatically.",
    "stripe_total_mismatch": "compare the run's Stripe movements with Stripe's balance report "
    "for the window; nothing is posted automatically.",
}
"""What a person does about each category, where the page offers no automatic correction."""


@dataclass(frozen=True)
class CorrectionFinding:
    """A finding as a correction needs it.

    Attributes:
        finding_id: its stable id (``F-`` and hex digits).
        category: its drift category.
        company_id: where the finding sits: the company whose balance it concerns (for a
            ``misapplied`` row, where the row sits).
        subscription_id: the subscription whose balance it concerns.
        currency: its currency code.
        entry_type: the Stripe movement's type (``credit``/``debit``), else the row's.
        stripe_amount_minor: the Stripe movement's amount, when there is one.
        moesif_amount_minor: the ledger row's amount, when there is one.
        moesif_entry_type: the ledger row's own type, when known and it may differ.
        belongs_company_id: for ``misapplied``, the company the movement maps to.
        belongs_subscription_id: for ``misapplied``, the subscription the movement maps to.
    """

    finding_id: str
    category: str
    company_id: str | None
    subscription_id: str | None
    currency: str | None
    entry_type: str | None
    stripe_amount_minor: int | None
    moesif_amount_minor: int | None
    moesif_entry_type: str | None = None
    belongs_company_id: str | None = None
    belongs_subscription_id: str | None = None


@dataclass(frozen=True)
class Plan:
    """What correcting a finding posts: the entries, or why nothing is posted automatically."""

    finding_id: str
    entries: tuple[Entry, ...] = ()
    refusal: str | None = None

    @property
    def postable(self) -> bool:
        """Return whether the plan posts something."""
        return self.refusal is None and bool(self.entries)


def correction_id(finding_id: str, leg: int = 1) -> str:
    """Return the transaction id of a finding's correction: ``corr_F-…``, ``corr_F-…_2``.

    Raises:
        ValueError: the leg is not 1 or 2.
    """
    if leg not in (1, 2):
        raise ValueError("a correction has one or two legs")
    return PREFIX + finding_id + (SECOND_LEG if leg == 2 else "")


def corrected_finding(transaction_id: str | None) -> tuple[str, int] | None:
    """Return the finding id and leg a correction's transaction id names, or ``None``."""
    found = _CORRECTION_ID.match(transaction_id) if transaction_id else None
    if found is None:
        return None
    return found.group(1), 2 if found.group(2) else 1


def plan(finding: CorrectionFinding, *, confirmed_error: bool = False) -> Plan:
    """Return the entries that settle ``finding``, or why none are posted automatically.

    Args:
        finding: the finding.
        confirmed_error: the operator confirms a ``missing_in_stripe`` row is an error (no
            Stripe movement stands behind it, and it is no goodwill credit).
    """
    refusal = _refusal(finding, confirmed_error=confirmed_error)
    if refusal is not None:
        return Plan(finding.finding_id, refusal=refusal)
    needed = _needed(finding)
    if not needed:
        return Plan(finding.finding_id, refusal="the balance needs no correction (delta is zero)")
    legs = [(str(finding.company_id), str(finding.subscription_id), needed)]
    if finding.category == Category.MISAPPLIED:
        if not (finding.belongs_company_id and finding.belongs_subscription_id):
            return Plan(finding.finding_id, refusal="where the movement belongs is not known")
        if not finding.stripe_amount_minor:
            return Plan(finding.finding_id, refusal="the Stripe movement's amount is not known")
        belongs = _signed(finding.entry_type, finding.stripe_amount_minor)
        legs.append((finding.belongs_company_id, finding.belongs_subscription_id, belongs))
    entries = tuple(
        _entry(finding, company, subscription, amount, leg, len(legs))
        for leg, (company, subscription, amount) in enumerate(legs, start=1)
    )
    for entry in entries:
        problem = minor_amount_problem(entry.amount_minor)
        if problem is not None:
            return Plan(finding.finding_id, refusal=problem)
    return Plan(finding.finding_id, entries)


def confirmation(plan: Plan) -> str:
    """Return, for a person to confirm, exactly what correcting the finding would post."""
    if not plan.postable:
        return f"Nothing will be posted for {plan.finding_id}: {plan.refusal}."
    lines = [f"Correcting {plan.finding_id} will post to Moesif:"]
    for entry in plan.entries:
        amount = readable_amount(entry.amount_minor, entry.currency)
        lines.append(
            f"  {entry.entry_type} of {amount} on company "
            f"{entry.company_id}, subscription {entry.subscription_id}, "
            f"transaction_id {entry.transaction_id}"
        )
    lines.append("Each is posted at most once; the next run checks that the finding is settled.")
    return "\n".join(lines)


def _refusal(finding: CorrectionFinding, *, confirmed_error: bool) -> str | None:
    """Return why a finding has no automatic correction, or ``None`` when it has one."""
    category = finding.category
    if category not in CORRECTABLE:
        steps = MANUAL_STEPS.get(category, "fix it in Moesif or Stripe.")
        return f"{category} has no automatic correction; {steps}"
    if category == Category.MISSING_IN_STRIPE and not confirmed_error:
        return (
            "a missing_in_stripe row is corrected only once confirmed as an error "
            "(no Stripe movement stands behind it and it is no goodwill credit)"
        )
    if not (finding.company_id and finding.subscription_id):
        return "the finding names no company and subscription to correct"
    if not is_iso_currency(finding.currency):
        return "the finding has no currency"
    if finding.entry_type not in (EntryType.CREDIT, EntryType.DEBIT):
        return "the finding's type is neither credit nor debit"
    if finding.moesif_entry_type not in (None, EntryType.CREDIT, EntryType.DEBIT):
        return "the ledger row's type is neither credit nor debit"
    if _needed(finding) is None:
        return "the finding's amounts are not known"
    return None


def _needed(finding: CorrectionFinding) -> int | None:
    """Return the signed minor units the finding's subscription needs (section 7's delta).

    A ledger row of the other type than its movement (a debit for a credit) is taken back, or
    set against the movement, as the type it has, which the report's delta alone does not know.
    """
    row_type = finding.moesif_entry_type
    if row_type is not None and row_type != finding.entry_type:
        if finding.moesif_amount_minor is None:
            return None
        row = _signed(row_type, finding.moesif_amount_minor)
        if finding.category != Category.AMOUNT_MISMATCH:
            return -row
        if finding.stripe_amount_minor is None:
            return None
        return _signed(finding.entry_type, finding.stripe_amount_minor) - row
    return correction(
        finding.category,
        finding.entry_type,
        finding.stripe_amount_minor,
        finding.moesif_amount_minor,
    )


def _signed(entry_type: str | None, amount_minor: int) -> int:
    return -amount_minor if entry_type == EntryType.DEBIT else amount_minor


def _entry(
    finding: CorrectionFinding, company: str, subscription: str, amount: int, leg: int, legs: int
) -> Entry:
    kind: Literal["credit", "debit"] = "credit" if amount > 0 else "debit"
    transaction_id = correction_id(finding.finding_id, leg)
    part = f", leg {leg} of {legs}" if legs > 1 else ""
    return Entry(
        transaction_id=transaction_id,
        company_id=company,
        subscription_id=subscription,
        entry_type=kind,
        amount_minor=abs(amount),
        currency=str(finding.currency).lower(),
        description=(
            f"reconcile: correction {kind} {transaction_id} of finding {finding.finding_id} "
            f"({finding.category}{part})"
        ),
    )
