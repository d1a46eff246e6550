"""Generated histories: Stripe customers and payments, the Moesif ledger beside them, and faults.

A history is plain data with logical names (``c0``, ``c0p1``...); ``worlds.py`` seeds it into the
fakes and learns the ids they hand out. What the job must do with a history (which movements
belong in Moesif, where) is computed here too, from the history alone, never from the job.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from hypothesis import strategies as st

NOT_YET_BUILT: set[str] = set()
"""Generator switches whose behaviour (contract sections 4 to 6) the job does not have yet."""

CURRENCIES = {"usd": 2, "eur": 2, "jpy": 0, "kwd": 3}
"""The currencies of the simulation and their minor-unit exponents."""

MAPPED = ("metadata", "single_subscription")
UNMAPPED = ("no_subscription", "several_subscriptions")
AFTERMATHS = (
    "none",
    "partial_refund",
    "full_refund",
    "partial_then_rest",
    "dispute_lost",
    "dispute_won",
)
LEDGER_STATES = ("correct", "missing", "doubled", "random_id", "cents")
"""How the Moesif ledger holds one Stripe movement before the job runs."""
EXTRA_KINDS = ("manual_credit", "promotion", "usage")
POISONS = (
    "negative_amount",
    "unknown_currency",
    "huge_amount",
    "nul_description",
    "bad_amount",
    "huge_moesif_amount",
)
MOESIF_FAULTS = ("429", "500", "502", "503", "504", "drop_before", "drop_after")
STRIPE_FAULTS = ("429", "500")


@dataclass(frozen=True)
class Movement:
    """One money movement a Stripe payment implies (contract section 4)."""

    key: str
    """Logical name: ``c0p1.credit``, ``c0p1.refund0``, ``c0p1.withdrawn``, ``c0p1.reinstated``."""
    entry_type: str
    amount: int
    minutes_ago: int
    ledger: str


@dataclass(frozen=True)
class Payment:
    """A PaymentIntent and what happened to it afterwards."""

    key: str
    kind: str
    """``topup``, ``invoice`` (linked to an invoice) or ``not_topup`` (``moesif_topup=false``)."""
    amount: int
    minutes_ago: int
    aftermath: str
    movements: tuple[Movement, ...]


@dataclass(frozen=True)
class Extra:
    """A ledger row Moesif holds of its own: a manual credit, a promotion, metered usage."""

    key: str
    kind: str
    amount: Decimal
    minutes_ago: int


@dataclass(frozen=True)
class Customer:
    """A Stripe customer, how it maps to Moesif, its payments and its extra ledger rows."""

    key: str
    mapping: str
    currency: str
    payments: tuple[Payment, ...]
    extras: tuple[Extra, ...]

    @property
    def mapped(self) -> bool:
        """Whether the customer maps to exactly one Moesif subscription."""
        return self.mapping in MAPPED


@dataclass(frozen=True)
class Poison:
    """A record the job cannot interpret safely: it must be ``unreadable``, never posted."""

    key: str
    kind: str
    minutes_ago: int


@dataclass(frozen=True)
class Faults:
    """Faults injected while the first world converges."""

    moesif: tuple[tuple[str, int, bool], ...]
    """Moesif faults: (kind, at the Nth request, counting only POSTs?)."""
    stripe: tuple[str, ...]
    """Statuses Stripe answers the first requests with."""
    kill_at: int | None
    """Kill the job at this request to Moesif of its first run (``None``: no kill)."""
    kill_verdict: str | None
    """What the fake does with that request: ``drop``, ``apply_then_drop`` or go on (``None``)."""
    kill_on_post: bool = False
    """``kill_at`` counts only the POSTs: the kill lands on a POST, before Moesif applies it
    (verdict ``drop``) or after it applied it and before it answers (``apply_then_drop``)."""


@dataclass(frozen=True)
class History:
    """Everything one example seeds, and the seeding order of the second world."""

    customers: tuple[Customer, ...]
    poisons: tuple[Poison, ...]
    faults: Faults
    shuffle_seed: int
    listing_seed: int = 0
    """The first world's fakes list in the order this seed picks; the second world's in another
    (both Stripe's ties and Moesif's billing reports)."""
    omit: tuple[float, int] | None = None
    """The share of Moesif rows the first world's reads leave out once, and its seed."""

    @property
    def switches(self) -> set[str]:
        """The generator switches this history uses (see :data:`NOT_YET_BUILT`)."""
        used = set()
        if self.poisons:
            used.add("poison")
        if any(m.ledger == "misapplied" for m in self.movements()):
            used.add("misapplied")
        return used

    def movements(self) -> list[tuple[Customer, Payment, Movement]]:
        """Every movement of every payment, with its customer and payment."""
        return [
            (customer, payment, movement)
            for customer in self.customers
            for payment in customer.payments
            for movement in payment.movements
        ]

    def owed(self) -> list[tuple[Customer, Movement]]:
        """The movements that belong in Moesif: top-ups of mapped customers and their reversals.

        A misapplied one is excluded: its row sits elsewhere and nothing is posted for it.
        """
        return [
            (customer, movement)
            for customer, payment, movement in self.movements()
            if customer.mapped and payment.kind == "topup" and movement.ledger != "misapplied"
        ]


def major(amount: int, currency: str) -> Decimal:
    """Return ``amount`` minor units of ``currency`` as an exact decimal in major units."""
    return Decimal(amount).scaleb(-CURRENCIES[currency])


def _movements(draw: st.DrawFn, key: str, amount: int, minutes_ago: int, aftermath: str, ledger):  # noqa: ANN001, ANN202
    later = draw(st.integers(min_value=1, max_value=max(1, minutes_ago - 90)))
    plan: list[tuple[str, str, int, int]] = [(f"{key}.credit", "credit", amount, minutes_ago)]
    part = max(1, amount // draw(st.sampled_from([2, 3, 4])))
    if aftermath == "partial_refund" and amount > 1:
        plan.append((f"{key}.refund0", "debit", part, minutes_ago - later))
    elif aftermath == "full_refund":
        plan.append((f"{key}.refund0", "debit", amount, minutes_ago - later))
    elif aftermath == "partial_then_rest" and amount > 1:
        plan.append((f"{key}.refund0", "debit", part, minutes_ago - later))
        plan.append((f"{key}.refund1", "debit", amount - part, minutes_ago - later - 1))
    elif aftermath in ("dispute_lost", "dispute_won"):
        plan.append((f"{key}.withdrawn", "debit", amount, minutes_ago - later))
        if aftermath == "dispute_won":
            plan.append((f"{key}.reinstated", "credit", amount, minutes_ago - later - 1))
    return tuple(Movement(name, kind, value, ago, draw(ledger)) for name, kind, value, ago in plan)


@st.composite
def _payment(draw: st.DrawFn, key: str, currency: str, ledger: st.SearchStrategy[str]) -> Payment:
    exponent = CURRENCIES[currency]
    amount = draw(st.integers(min_value=1, max_value=500 * 10**exponent))
    minutes_ago = draw(st.integers(min_value=180, max_value=6 * 24 * 60))
    kind = draw(st.sampled_from(["topup", "topup", "topup", "invoice", "not_topup"]))
    aftermath = draw(st.sampled_from(AFTERMATHS))
    movements = _movements(draw, key, amount, minutes_ago, aftermath, ledger)
    return Payment(key, kind, amount, minutes_ago, aftermath, movements)


@st.composite
def _customer(draw: st.DrawFn, index: int, misapplied: bool) -> Customer:
    key = f"c{index}"
    mapping = draw(st.sampled_from(MAPPED + MAPPED + UNMAPPED))
    currency = draw(st.sampled_from(sorted(CURRENCIES)))
    states = LEDGER_STATES + (("misapplied",) if misapplied else ())
    ledger = st.sampled_from(states)
    count = draw(st.integers(min_value=0, max_value=3))
    payments = tuple(draw(_payment(f"{key}p{n}", currency, ledger)) for n in range(count))
    extras: tuple[Extra, ...] = ()
    if mapping in MAPPED:
        extras = tuple(
            Extra(
                f"{key}x{n}",
                draw(st.sampled_from(EXTRA_KINDS)),
                major(draw(st.integers(min_value=1, max_value=9999)), currency),
                draw(st.integers(min_value=60, max_value=6 * 24 * 60)),
            )
            for n in range(draw(st.integers(min_value=0, max_value=2)))
        )
    return Customer(key, mapping, currency, payments, extras)


@st.composite
def _faults(draw: st.DrawFn, kill: bool, always_kill: bool) -> Faults:
    fault = st.tuples(
        st.sampled_from(MOESIF_FAULTS), st.integers(min_value=1, max_value=12), st.booleans()
    )
    moesif = tuple(draw(st.lists(fault, max_size=4)))
    stripe = tuple(draw(st.lists(st.sampled_from(STRIPE_FAULTS), max_size=3)))
    if not kill or not (always_kill or draw(st.booleans())):
        return Faults(moesif, stripe, None, None)
    if draw(st.booleans()):
        kill_at = draw(st.integers(min_value=1, max_value=4))
        verdict = draw(st.sampled_from(["drop", "apply_then_drop"]))
        return Faults(moesif, stripe, kill_at, verdict, kill_on_post=True)
    kill_at = draw(st.integers(min_value=1, max_value=12))
    verdict = draw(st.sampled_from([None, "drop", "apply_then_drop"]))
    return Faults(moesif, stripe, kill_at, verdict)


@st.composite
def histories(
    draw: st.DrawFn,
    *,
    misapplied: bool = False,
    poison: bool = False,
    kill: bool = True,
    always_kill: bool = False,
) -> History:
    """Generate one history; ``misapplied`` and ``poison`` switch those records on.

    ``kill`` lets the faults include a SIGKILL of the job; ``always_kill`` makes it certain.
    """
    count = draw(st.integers(min_value=1, max_value=5))
    customers = tuple(draw(_customer(index, misapplied)) for index in range(count))
    poisons: tuple[Poison, ...] = ()
    if poison:
        kinds = draw(st.lists(st.sampled_from(POISONS), min_size=1, max_size=3, unique=True))
        poisons = tuple(
            Poison(f"z{n}", kind, draw(st.integers(min_value=120, max_value=5 * 24 * 60)))
            for n, kind in enumerate(kinds)
        )
    faults = draw(_faults(kill, always_kill))
    shuffle_seed = draw(st.integers(min_value=0, max_value=2**32))
    listing_seed = draw(st.integers(min_value=0, max_value=2**32))
    share = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    omit = (share, draw(st.integers(min_value=0, max_value=2**32))) if share else None
    return History(customers, poisons, faults, shuffle_seed, listing_seed, omit)


def _planned(
    key: str,
    amount: int,
    minutes_ago: int,
    ledgers: tuple[str, ...],
    kind: str = "topup",
    aftermath: str = "none",
) -> Payment:  # noqa: E501
    """A payment whose movements are laid out as :func:`_movements` would, with given ledgers."""
    names = {
        "none": [],
        "partial_refund": [("refund0", "debit", amount // 2)],
        "full_refund": [("refund0", "debit", amount)],
        "partial_then_rest": [
            ("refund0", "debit", amount // 4),
            ("refund1", "debit", amount - amount // 4),
        ],
        "dispute_lost": [("withdrawn", "debit", amount)],
        "dispute_won": [("withdrawn", "debit", amount), ("reinstated", "credit", amount)],
    }[aftermath]
    plan = [("credit", "credit", amount)] + names
    movements = tuple(
        Movement(f"{key}.{name}", entry, value, minutes_ago - 60 - n, ledger)
        for n, ((name, entry, value), ledger) in enumerate(zip(plan, ledgers, strict=True))
    )
    movements = (replace(movements[0], minutes_ago=minutes_ago),) + movements[1:]
    return Payment(key, kind, amount, minutes_ago, aftermath, movements)


def rich_history(
    *,
    kill_at: int | None = None,
    kill_on_post: bool = False,
    kill_verdict: str = "apply_then_drop",
) -> History:
    """One hand-made history with every mapping, currency, aftermath, ledger state and fault.

    CI runs it first, so a few examples still cover everything: non-zero balances, a shuffled
    listing order, reads that leave a third of the rows out once; with ``kill_on_post`` the
    job is killed at its ``kill_at``-th POST, with ``kill_verdict`` as the fake's answer.
    """
    day = 24 * 60
    customers = (
        Customer(
            "c0",
            "metadata",
            "usd",
            (
                _planned("c0p0", 5000, 5 * day, ("correct", "missing"), aftermath="partial_refund"),
                _planned("c0p1", 10000, 3 * day, ("doubled",)),
                _planned("c0p2", 1050, 3 * day + 7, ("cents",)),
                _planned(
                    "c0p3",
                    4000,
                    2 * day,
                    ("correct", "missing", "random_id"),
                    aftermath="dispute_won",
                ),
                _planned("c0p4", 9900, day, ("missing",), kind="invoice"),
                _planned("c0p5", 1500, day, ("missing",), kind="not_topup"),
            ),
            (
                Extra("c0x0", "manual_credit", Decimal("20.00"), 2 * day),
                Extra("c0x1", "promotion", Decimal("5.00"), day),
                Extra("c0x2", "usage", Decimal("3.20"), day),
            ),
        ),
        Customer(
            "c1",
            "single_subscription",
            "jpy",
            (_planned("c1p0", 5000, 4 * day, ("missing", "missing"), aftermath="full_refund"),),
            (),
        ),
        Customer(
            "c2",
            "metadata",
            "kwd",
            (
                _planned("c2p0", 1500, 4 * day, ("missing", "missing"), aftermath="dispute_lost"),
                _planned(
                    "c2p1",
                    2750,
                    2 * day,
                    ("correct", "cents", "random_id"),
                    aftermath="partial_then_rest",
                ),
            ),
            (),
        ),
        Customer(
            "c3", "several_subscriptions", "eur", (_planned("c3p0", 3000, day, ("missing",)),), ()
        ),
        Customer(
            # No drift left once posted, so the balance check compares a non-zero balance.
            "c5",
            "metadata",
            "eur",
            (_planned("c5p0", 7000, 2 * day, ("missing", "correct"), aftermath="partial_refund"),),
            (),
        ),
        Customer(
            "c4",
            "no_subscription",
            "usd",
            (_planned("c4p0", 2000, day, ("missing", "missing"), aftermath="partial_refund"),),
            (),
        ),
    )
    faults = Faults(
        moesif=(
            ("429", 1, False),
            ("503", 2, False),
            ("500", 1, True),
            ("drop_before", 2, True),
            ("drop_after", 4, True),
            ("504", 5, True),
        ),
        stripe=("429", "500"),
        kill_at=kill_at,
        kill_verdict=kill_verdict if kill_at is not None else None,
        kill_on_post=kill_on_post,
    )
    return History(customers, (), faults, shuffle_seed=7, listing_seed=11, omit=(0.34, 5))
