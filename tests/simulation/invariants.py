"""What must hold once a world has settled, checked against the fakes and the last report.

What belongs in Moesif is worked out from the generated history alone (``histories.py``), never
from the job's own database.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from sqlalchemy import create_engine, select

from reconcile.db.models import LedgerEntry
from reconcile.domain.values import REPORT_COLUMNS
from tests.simulation.histories import CURRENCIES, major
from tests.simulation.worlds import Seeded

FLAGGED = "flagged"
COMPARED_COLUMNS = tuple(
    REPORT_COLUMNS[REPORT_COLUMNS.index("category") : REPORT_COLUMNS.index("delta") + 1]
)
"""The report columns that say what a finding is about; times and run ids differ per world."""

Finding = tuple[str, ...]


def owed_movements_are_in_moesif_once(seeded: Seeded) -> None:
    """Every movement that belongs in Moesif is there exactly once, on its subscription.

    Either one ledger row carries its transaction id, on the company and subscription it maps
    to, or (no row carries it) a run reported that a row without a Stripe id matched it by
    amount (only the run that makes the match reports it; later runs keep it silently).
    """
    ledger = seeded.world.moesif.rows()
    every_run = [row for path in seeded.world.reports() for row in seeded.world.report_rows(path)]
    by_amount = {
        row["transaction_id"] for row in every_run if row["category"] == "matched_by_amount"
    }
    for customer, movement in seeded.history.owed():
        tid = seeded.tid(movement)
        holding = [
            (row.company_id, row.subscription_id) for row in ledger if row.transaction_id == tid
        ]
        place = seeded.places[customer.key]
        if holding:
            assert holding == [place], f"{movement.key} ({tid}) is held at {holding}, not {place}"
        else:
            assert tid in by_amount, f"{movement.key} ({tid}) is not in Moesif and not matched"


def nothing_posted_twice_or_wrongly(seeded: Seeded) -> None:
    """Each POST Moesif applied is a movement that belongs there, sent once, with its mapping.

    Counted in the fake's log of applied POSTs (it forgives no repeated id), together with the
    rows Moesif held before the job ran: a movement already held is never posted again.
    """
    moesif = seeded.world.moesif
    sent = moesif.applied_counts()
    twice = {tid: count for tid, count in sent.items() if count > 1}
    assert not twice, f"applied more than once: {twice}"
    held = Counter(row.transaction_id for row in moesif.rows() if row.transaction_id)
    again = {tid: held[tid] for tid in sent if held[tid] > sent[tid]}
    assert not again, f"posted although Moesif already held it: {again}"
    owed = {
        seeded.tid(movement): (customer, movement) for customer, movement in seeded.history.owed()
    }
    for post in moesif.applied:
        tid = post.transaction_id
        assert tid in owed, f"posted {tid}, which does not belong in Moesif: {post}"
        customer, movement = owed[tid]
        expected = (
            *seeded.places[customer.key],
            movement.entry_type,
            major(movement.amount, customer.currency),
        )
        got = (post.company_id, post.subscription_id, post.type, post.amount)
        assert got == expected, f"{movement.key} posted as {got}, expected {expected}"


def findings(seeded: Seeded, rows: list[dict[str, str]]) -> Counter[Finding]:
    """The report's findings in logical names, so worlds seeded in another order compare."""
    names = seeded.names()
    return Counter(
        tuple(names.get(row[column], row[column]) for column in COMPARED_COLUMNS) for row in rows
    )


def flagged_subscriptions(rows: list[dict[str, str]]) -> set[str]:
    """Subscriptions a flagged finding names, in its subscription column or in its detail."""
    flagged = [row for row in rows if row["action"] == FLAGGED]
    named = {row["subscription_id"] for row in flagged}
    return named | {
        word.strip(",;.()")
        for row in flagged
        for word in row["detail"].split()
        if word.startswith("sub_")
    }


def balances_follow_stripe(seeded: Seeded, rows: list[dict[str, str]]) -> int:
    """For every subscription no flagged finding names, Moesif's net equals what Stripe implies.

    Returns how many subscriptions it compared whose Moesif balance is not zero (a check over
    zero balances only would be vacuous).
    """
    implied: dict[str, Decimal] = {}
    for customer, movement in seeded.history.owed():
        subscription = seeded.places[customer.key][1]
        sign = 1 if movement.entry_type == "credit" else -1
        implied[subscription] = implied.get(subscription, Decimal(0)) + sign * major(
            movement.amount, customer.currency
        )
    held: dict[str, Decimal] = {}
    for row in seeded.world.moesif.rows():
        if row.billing_meter_id or row.type not in ("credit", "debit"):
            continue
        sign = 1 if row.type == "credit" else -1
        held[row.subscription_id] = held.get(row.subscription_id, Decimal(0)) + sign * row.amount
    flagged = flagged_subscriptions(rows)
    non_zero = 0
    for subscription in sorted((set(implied) | set(held)) - flagged):
        want, have = implied.get(subscription, Decimal(0)), held.get(subscription, Decimal(0))
        assert want == have, f"{subscription}: Moesif nets {have}, Stripe implies {want}"
        non_zero += seeded.world.moesif.balance(subscription) != 0
    return non_zero


def nothing_gone_that_moesif_holds(seeded: Seeded) -> int:
    """No ledger row the job's database marks gone is still in Moesif's ledger.

    A read that leaves a row out is no proof that Moesif lost it. Returns how many rows of the
    job's database it compared.
    """
    moesif = seeded.world.moesif
    held_ids = {row.id for row in moesif.rows()}
    engine = create_engine(seeded.world.database_url)
    try:
        with engine.connect() as connection:
            known = connection.execute(
                select(LedgerEntry.moesif_id, LedgerEntry.transaction_id, LedgerEntry.gone_at)
            ).all()
    finally:
        engine.dispose()
    gone = [
        (moesif_id, tid)
        for moesif_id, tid, gone_at in known
        if gone_at is not None and (moesif_id in held_ids or (tid and moesif.held(tid)))
    ]
    assert not gone, f"marked gone although Moesif still holds them: {gone}"
    return len(known)


def seeded_drift_is_reported(seeded: Seeded, rows: list[dict[str, str]]) -> None:
    """Drift seeded on purpose shows in the report under its category, and is never posted."""
    reported = {(row["category"], row["transaction_id"]) for row in rows}
    reported |= {(row["category"], row["stripe_object_id"]) for row in rows}
    posted = set(seeded.world.moesif.applied_counts())
    for customer, payment, movement in seeded.history.movements():
        tid = seeded.tid(movement)
        if payment.kind != "topup":
            assert tid not in posted, f"{movement.key} is not a top-up but was posted"
        elif not customer.mapped:
            assert ("unmapped_customer", tid) in reported, f"{movement.key} unmapped, unreported"
            assert tid not in posted
        elif movement.ledger == "cents" and CURRENCIES[customer.currency]:
            assert ("amount_mismatch", tid) in reported, f"{movement.key} in cents, unreported"
        elif movement.ledger == "misapplied":
            assert ("misapplied", tid) in reported, f"{movement.key} misapplied, unreported"
            assert tid not in posted, f"{movement.key} misapplied, yet posted"
    for poison in seeded.history.poisons:
        poisoned = seeded.ids[poison.key]
        assert ("unreadable", poisoned) in reported, f"{poison.kind} ({poisoned}) not unreadable"
        assert poisoned not in posted, f"{poison.kind} ({poisoned}) was posted"


def exit_code_matches_report(code: int, rows: list[dict[str, str]]) -> None:
    """A settled run exits 1 when flagged drift remains, else 0."""
    expected = 1 if any(row["action"] == FLAGGED for row in rows) else 0
    assert code == expected, f"exit {code} with {Counter(row['category'] for row in rows)}"
