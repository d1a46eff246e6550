"""Interleaved histories: webhook deliveries, /top-up calls and nightly runs over one world.

A history is plain data: customers (some the posting rule refuses), payments that arrive by
webhook or by ``/top-up``, refunds, and a list of steps in a drawn order (deliveries duplicated
and reordered, top-ups retried or their key reused, nightly runs with incomplete or capped
reads). :func:`play` carries the steps out against a running ``serve`` app, the fake Stripe and
the fake Moesif, on one database; :func:`owed` says, from the history alone, which movements the
nightly rules put in Moesif (what ``/top-up`` answered is only used to learn the ids Stripe gave).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from reconcile.cli import main
from reconcile.config import Secret, ServeSettings
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.models import LedgerEntry
from reconcile.domain.times import to_iso
from reconcile.domain.values import Entry
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe, sign
from reconcile.posting.engine import PostingEngine
from reconcile.posting.outcome import Outcome
from reconcile.serve.app import ServeParts, create_app
from reconcile.serve.destinations import Destinations
from reconcile.serve.limits import server_config
from tests.serve.conftest import (
    MOESIF_TOKEN,
    SECRET,
    STRIPE_KEY,
    TOKEN,
    Clock,
    moesif_client,
    stripe_client,
)
from tests.simulation.histories import major

CURRENCIES = ("usd", "eur", "jpy")
EXPONENT = {"usd": 2, "eur": 2, "jpy": 0}
KINDS = ("ok", "ok", "ok", "lacks", "other")
"""How a customer maps: ``ok`` (its Moesif subscription exists and is its company's),
``lacks`` (names a subscription Moesif does not have), ``other`` (names another company's)."""
OTHER = ("co_il_other", "sub_il_other")
"""Another company's subscription, in USD, that ``other`` customers name."""
FAULTS = ("none", "omit", "cap")
COVERED = (
    "duplicate delivery",
    "reordered delivery",
    "top-up retried",
    "top-up key reused",
    "rule-breaking webhook",
    "rule-breaking top-up",
    "omitted read",
    "capped read",
    "nightly between steps",
    "held by another integration",
    "misapplied by another integration",
)
"""What a hand-made first history must make happen (:attr:`Played.covered`)."""
RERUNS = 5


@dataclass(frozen=True)
class Customer:
    """A Stripe customer with a saved card, and how it maps to Moesif."""

    key: str
    kind: str
    currency: str
    """Its Moesif subscription's currency (``lacks``: the one it would have had)."""

    @property
    def stripe_id(self) -> str:
        """The customer's id in the fake Stripe."""
        return f"cus_il_{self.key}"

    @property
    def place(self) -> tuple[str, str]:
        """The company and subscription its payments map to."""
        if self.kind == "other":
            return (f"co_il_{self.key}", OTHER[1])
        return (f"co_il_{self.key}", f"sub_il_{self.key}")


@dataclass(frozen=True)
class Payment:
    """A payment: by webhook or by ``/top-up``, perhaps refunded in part or whole."""

    key: str
    customer: Customer
    path: str
    """``webhook`` (a payment made elsewhere, announced by event) or ``topup``."""
    currency: str
    amount: int
    refund: int | None = None
    refund_event: str = "refund.created"
    legacy: str = "none"
    """A webhook payment an older integration already wrote to Moesif: ``held`` (on the right
    subscription) or ``misapplied`` (on another company's); ``none``. Never refunded."""

    @property
    def allowed(self) -> bool:
        """Whether the nightly rules post it: mapped, subscription of its company, same currency."""
        return self.customer.kind == "ok" and self.currency == self.customer.currency

    @property
    def posted(self) -> bool:
        """Whether the nightly rules post its credit: allowed and not in Moesif already."""
        return self.allowed and self.legacy == "none"


@dataclass(frozen=True)
class Step:
    """One thing that happens.

    ``create`` (make the payment, or call /top-up), ``refund``, ``deliver`` (one copy of the
    payment's or refund's event: ``what``), ``retry`` (the same top-up, same key), ``reuse``
    (the key with another amount), ``drain`` (the event worker), ``nightly`` (with ``fault``
    and ``level``: the omitted share or the read cap).
    """

    action: str
    payment: str = ""
    what: str = ""
    fault: str = "none"
    level: int = 0
    seed: int = 0


@dataclass(frozen=True)
class History:
    """Customers, payments and the steps in the order they happen."""

    customers: tuple[Customer, ...]
    payments: tuple[Payment, ...]
    steps: tuple[Step, ...]

    def payment(self, key: str) -> Payment:
        """Return the payment named ``key``."""
        return next(payment for payment in self.payments if payment.key == key)


@dataclass
class Played:
    """What happened while a history played: ids Stripe gave, answers, exit codes, coverage."""

    ids: dict[str, str] = field(default_factory=dict)
    """``p0`` to its PaymentIntent id, ``p0.refund`` to its refund id (created ones only)."""
    events: dict[str, str] = field(default_factory=dict)
    """``p0`` / ``p0.refund`` to the id of the event announcing it."""
    topups: dict[str, httpx.Response] = field(default_factory=dict)
    """Each top-up's first answer."""
    delivered: list[str] = field(default_factory=list)
    """Event ids in delivery order, copies included."""
    exits: list[int] = field(default_factory=list)
    covered: set[str] = field(default_factory=set)


# Generating.


@st.composite
def _customer(draw: st.DrawFn, index: int) -> Customer:
    return Customer(f"c{index}", draw(st.sampled_from(KINDS)), draw(st.sampled_from(CURRENCIES)))


@st.composite
def _payment(draw: st.DrawFn, index: int, customers: tuple[Customer, ...]) -> Payment:
    customer = draw(st.sampled_from(customers))
    currency = draw(st.sampled_from((customer.currency,) * 3 + CURRENCIES))
    amount = draw(st.integers(min_value=1, max_value=500 * 10 ** EXPONENT[currency]))
    path = draw(st.sampled_from(("webhook", "topup")))
    legacy = "none"
    if path == "webhook":
        # Moesif holds rows only on subscriptions it has: a held row needs the customer's own.
        held = ("held",) if customer.kind == "ok" else ()
        legacy = draw(st.sampled_from(("none", "none", "none", *held, "misapplied")))
    refund = None
    if legacy == "none":
        refund = draw(st.none() | st.integers(min_value=1, max_value=amount))
    return Payment(
        f"p{index}",
        customer,
        path,
        currency,
        amount,
        refund,
        draw(st.sampled_from(("refund.created", "charge.refunded"))),
        legacy,
    )


@st.composite
def _track(draw: st.DrawFn, payment: Payment) -> list[Step]:
    """The steps of one payment, in an order its causes allow; deliveries may come in any order."""
    key = payment.key
    steps = [Step("create", key)]
    if payment.legacy != "none" and draw(st.booleans()):
        steps.append(Step("nightly"))  # the snapshot may have seen the older integration's row
    if payment.refund is not None:
        steps.append(Step("refund", key))
    copies = draw(st.integers(min_value=0 if payment.path == "topup" else 1, max_value=3))
    deliveries = [Step("deliver", key, "payment")] * copies
    if payment.refund is not None:
        deliveries += [Step("deliver", key, "refund")] * draw(st.integers(1, 2))
    if payment.path == "topup":
        deliveries += [Step("retry", key)] * draw(st.integers(0, 2))
        deliveries += [Step("reuse", key)] * draw(st.integers(0, 1))
    return steps + draw(st.permutations(deliveries))


@st.composite
def _nightly(draw: st.DrawFn) -> Step:
    fault = draw(st.sampled_from(FAULTS))
    level = {"none": 0, "omit": draw(st.integers(30, 90)), "cap": draw(st.integers(1, 4))}[fault]
    return Step("nightly", fault=fault, level=level, seed=draw(st.integers(0, 2**16)))


@st.composite
def histories(draw: st.DrawFn) -> History:
    """Generate customers, payments and one interleaving of their steps with nightly runs."""
    customers = tuple(draw(_customer(n)) for n in range(draw(st.integers(1, 4))))
    payments = tuple(draw(_payment(n, customers)) for n in range(draw(st.integers(1, 6))))
    tracks = [draw(_track(payment)) for payment in payments]
    steps: list[Step] = []
    while any(tracks):
        extra = draw(st.integers(0, 9))
        if extra < 2:
            steps.append(draw(_nightly()))
        elif extra == 2:
            steps.append(Step("drain"))
        live = [track for track in tracks if track]
        steps.append(live[draw(st.integers(0, len(live) - 1))].pop(0))
    return History(customers, payments, tuple(steps))


def rich_history() -> History:
    """A hand-made history where every kind of interleaving in :data:`COVERED` happens."""
    ok = Customer("c0", "ok", "usd")
    yen = Customer("c1", "ok", "jpy")
    lacks = Customer("c2", "lacks", "eur")
    other = Customer("c3", "other", "usd")
    payments = (
        Payment("p0", ok, "webhook", "usd", 1050, refund=300),
        Payment("p1", yen, "topup", "jpy", 5000, refund=5000, refund_event="charge.refunded"),
        Payment("p2", ok, "webhook", "eur", 2000),
        Payment("p3", lacks, "webhook", "eur", 700),
        Payment("p4", other, "topup", "usd", 900),
        Payment("p5", ok, "topup", "jpy", 800),
        Payment("p6", yen, "webhook", "jpy", 300),
        Payment("p7", ok, "topup", "usd", 2500),
        Payment("p8", ok, "webhook", "usd", 1200, legacy="held"),
        Payment("p9", yen, "webhook", "jpy", 4000, legacy="misapplied"),
    )
    steps = (
        Step("create", "p0"),
        Step("create", "p1"),
        Step("nightly", fault="cap", level=2),
        Step("refund", "p0"),
        Step("deliver", "p0", "refund"),
        Step("create", "p2"),
        Step("deliver", "p0", "payment"),
        Step("drain"),
        Step("deliver", "p0", "payment"),
        Step("retry", "p1"),
        Step("create", "p3"),
        Step("create", "p4"),
        Step("reuse", "p1"),
        Step("create", "p5"),
        Step("nightly", fault="omit", level=60, seed=3),
        Step("deliver", "p2", "payment"),
        Step("deliver", "p3", "payment"),
        Step("deliver", "p3", "payment"),
        Step("deliver", "p3", "payment"),
        Step("retry", "p4"),
        Step("reuse", "p4"),
        Step("create", "p6"),
        Step("deliver", "p1", "payment"),
        Step("refund", "p1"),
        Step("nightly", fault="omit", level=90, seed=11),
        Step("deliver", "p1", "refund"),
        Step("create", "p7"),
        Step("deliver", "p7", "payment"),
        Step("retry", "p7"),
        Step("nightly", fault="cap", level=3),
        Step("deliver", "p6", "payment"),
        Step("deliver", "p0", "payment"),
        Step("retry", "p5"),
        Step("create", "p8"),
        Step("create", "p9"),
        Step("nightly"),
        Step("deliver", "p9", "payment"),
        Step("nightly", fault="omit", level=90, seed=5),
        Step("deliver", "p8", "payment"),
        Step("drain"),
        Step("deliver", "p9", "payment"),
    )
    return History((ok, yen, lacks, other), payments, steps)


# What the nightly rules alone imply.

Movement = tuple[str, str, str, str, Decimal]
"""(transaction id, company, subscription, type, amount in major units) as Moesif holds it."""


def owed(history: History, played: Played) -> Counter[Movement]:
    """Each movement the nightly rules put in Moesif, once: allowed payments and their refunds.

    Only ids come from ``played`` (Stripe hands them out); a top-up the rules refuse has none.
    """
    movements: Counter[Movement] = Counter()
    for payment in history.payments:
        if not payment.posted or payment.key not in played.ids:
            continue
        company, subscription = payment.customer.place
        amount = major(payment.amount, payment.currency)
        movements[(played.ids[payment.key], company, subscription, "credit", amount)] += 1
        refund = played.ids.get(f"{payment.key}.refund")
        if refund is not None and payment.refund is not None:
            debit = major(payment.refund, payment.currency)
            movements[(refund, company, subscription, "debit", debit)] += 1
    return movements


def applied(moesif: FakeMoesif) -> Counter[Movement]:
    """Every POST the fake Moesif applied, as movements (a repeated one counts twice)."""
    return Counter(
        (post.transaction_id, post.company_id, post.subscription_id, post.type, post.amount)
        for post in moesif.applied
    )


# Playing.


@dataclass
class Stage:
    """A running ``serve`` app over one database, the two fakes, and the nightly's environment."""

    url: str
    app: Any
    stripe: FakeStripe
    moesif: FakeMoesif
    sessions: sessionmaker[Any]
    clock: Clock
    environment: dict[str, str]
    started: datetime

    def drain(self) -> None:
        """Let the event worker act on every event due, moving its clock past any backoff."""
        for _round in range(20):
            self.clock.moment = datetime.now(UTC)
            if not self.app.state.worker.drain():
                return
        raise AssertionError("the event worker kept finding due events")

    def gone_rows(self) -> list[tuple[str, str | None]]:
        """The snapshot's rows marked gone: (Moesif row id, transaction id)."""
        with self.sessions() as session:
            query = select(LedgerEntry.moesif_id, LedgerEntry.transaction_id).where(
                LedgerEntry.gone_at.is_not(None)
            )
            return [(str(moesif_id), tid) for moesif_id, tid in session.execute(query)]


@contextmanager
def stage(database_url: str, directory: Path) -> Iterator[Stage]:
    """Start the fakes and a ``serve`` app (worker drained by hand) on a migrated database.

    The app is built as ``tests/serve/conftest.py``'s ``make_served`` builds it (copied here in
    short: that fixture is per test, a history needs a fresh world per example).
    """
    engine = make_engine(database_url)
    upgrade_to_head(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with (
        FakeStripe(api_key=STRIPE_KEY) as stripe,
        FakeMoesif(token=MOESIF_TOKEN) as moesif,
        httpx.Client(base_url=moesif.base_url, timeout=5.0) as moesif_http,
    ):
        clock = Clock()
        client = moesif_client(moesif_http)
        posting = PostingEngine(sessions, client, amount_unit="major", clock=clock)

        def post(order: Entry, origin: str) -> Outcome:
            return posting.post(order, origin=origin)

        app = create_app(
            ServeParts(
                settings=ServeSettings(
                    webhook_secrets=(Secret(SECRET),), topup_token=Secret(TOKEN)
                ),
                sessions=sessions,
                stripe_client=stripe_client(stripe),
                post=post,
                destinations=Destinations(sessions, client, clock),
                clock=clock,
                run_worker=False,
            )
        )
        server = uvicorn.Server(server_config(app, "127.0.0.1", 0))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            while not server.started:
                if not thread.is_alive():
                    raise RuntimeError("the server did not start")
                time.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            environment = {
                "STRIPE_API_KEY": STRIPE_KEY,
                "STRIPE_API_BASE": stripe.base_url,
                "MOESIF_MANAGEMENT_TOKEN": f"Bearer {MOESIF_TOKEN}",
                "MOESIF_API_BASE": moesif.base_url,
                "RECONCILE_DATABASE_URL": database_url,
                "RECONCILE_REPORT_DIR": str(directory / "reports"),
                "STRIPE_MAX_REQUESTS_PER_SECOND": "1000",
                "RECONCILE_RETRY_BASE_DELAY": "0.001",
                "RECONCILE_STRIPE_REPORT_POLL_SECONDS": "0.001",
            }
            yield Stage(
                f"http://127.0.0.1:{port}",
                app,
                stripe,
                moesif,
                sessions,
                clock,
                environment,
                datetime.now(UTC),
            )
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            engine.dispose()


def _seed(stage: Stage, history: History) -> None:
    stage.moesif.add_subscription(OTHER[1], OTHER[0], currency="usd")
    for customer in history.customers:
        company, subscription = customer.place
        stage.stripe.add_customer(
            id=customer.stripe_id,
            metadata={"moesif_company_id": company, "moesif_subscription_id": subscription},
        )
        stage.stripe.set_default_payment_method(customer.stripe_id, "pm_card_visa")
        if customer.kind == "ok":
            stage.moesif.add_subscription(subscription, company, currency=customer.currency)


def play(stage: Stage, history: History) -> Played:
    """Carry out every step of ``history``; then drain and run the nightly until it settles."""
    played = Played()
    _seed(stage, history)
    for number, step in enumerate(history.steps):
        if step.action == "nightly":
            if 0 < number < len(history.steps) - 1:
                played.covered.add("nightly between steps")
            _nightly_with_fault(stage, step, played)
        elif step.action == "drain":
            stage.drain()
        else:
            _payment_step(stage, history.payment(step.payment), step, played)
    _cover_deliveries(played)
    settle(stage, played)
    return played


def settle(stage: Stage, played: Played) -> None:
    """Drain the worker and rerun the nightly, faults off, until a run changes nothing."""
    stage.drain()
    codes: list[int] = []
    for _run in range(RERUNS):
        before = len(stage.moesif.applied)
        codes.append(nightly(stage))
        nothing_held_is_gone(stage)
        stage.drain()
        if len(stage.moesif.applied) == before and len(codes) > 1 and codes[-1] == codes[-2]:
            played.exits.extend(codes)
            return
    raise AssertionError(f"the nightly run did not settle in {RERUNS} runs: exits {codes}")


def nightly(stage: Stage, read_cap: int | None = None) -> int:
    """Run the nightly job through its command line in this process; return its exit code.

    Exit 3 (a read that stayed at the cap in a one-second window) only with ``read_cap``.
    """
    window = [
        "--since",
        to_iso(stage.started - timedelta(hours=1)),
        "--until",
        to_iso(datetime.now(UTC) + timedelta(minutes=1)),
    ]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in stage.environment.items():
            patch.setenv(name, value)
        if read_cap is not None:
            patch.setenv("RECONCILE_MOESIF_READ_CAP", str(read_cap))
        patch.chdir(Path(stage.environment["RECONCILE_REPORT_DIR"]).parent)
        code = main(window)
    allowed = (0, 1, 3) if read_cap is not None else (0, 1)
    assert code in allowed, f"the nightly run exited {code} (read cap {read_cap})"
    return code


def _nightly_with_fault(stage: Stage, step: Step, played: Played) -> None:
    moesif = stage.moesif
    left_out = sum(moesif._left_out.values())  # noqa: SLF001 - how many rows reads left out
    held = len(moesif.rows())
    if step.fault == "omit":
        moesif.omit_share, moesif.omit_seed, moesif.omit_reads = step.level / 100, step.seed, 1
    if step.fault == "cap":
        moesif.read_cap, moesif.cap_mode = step.level, "truncate"
    try:
        played.exits.append(nightly(stage, step.level if step.fault == "cap" else None))
    finally:
        moesif.omit_share, moesif.read_cap = 0.0, None
    nothing_held_is_gone(stage)
    if sum(moesif._left_out.values()) > left_out:  # noqa: SLF001
        played.covered.add("omitted read")
    if step.fault == "cap" and held >= step.level:
        played.covered.add("capped read")


def nothing_held_is_gone(stage: Stage) -> None:
    """No row the snapshot marks gone is one Moesif still holds (by row id or transaction id)."""
    held_ids = {row.id for row in stage.moesif.rows()}
    for moesif_id, tid in stage.gone_rows():
        assert moesif_id not in held_ids, f"row {moesif_id} ({tid}) marked gone, Moesif holds it"
        assert tid is None or stage.moesif.held(tid) == 0, f"{tid} marked gone, Moesif holds it"


def _payment_step(stage: Stage, payment: Payment, step: Step, played: Played) -> None:
    stripe, key = stage.stripe, payment.key
    if step.action == "create" and payment.path == "webhook":
        intent = stripe.add_payment_intent(
            payment.customer.stripe_id, payment.amount, currency=payment.currency
        )
        played.ids[key] = intent
        played.events[key] = stripe.emit_event("payment_intent.succeeded", "payment_intent", intent)
        if payment.legacy != "none":
            company, subscription = payment.customer.place if payment.legacy == "held" else OTHER
            stage.moesif.add_row(
                company,
                subscription,
                "credit",
                major(payment.amount, payment.currency),
                datetime.now(UTC),
                transaction_id=intent,
                description="webhook: top-up",
            )
            played.covered.add(f"{payment.legacy} by another integration")
    elif step.action == "create":
        answer = top_up(stage, payment, key)
        played.topups[key] = answer
        if not payment.allowed:
            played.covered.add("rule-breaking top-up")
        if answer.status_code == 200:
            intent = answer.json()["payment_intent_id"]
            played.ids[key] = intent
            played.events[key] = _event_about(stripe, intent, "payment_intent.succeeded")
    elif step.action == "refund" and key in played.ids:
        refund = stripe.add_refund(played.ids[key], amount=payment.refund)
        played.ids[f"{key}.refund"] = refund
        if payment.refund_event == "charge.refunded":
            charge = next(
                item["latest_charge"]
                for item in stripe.objects("payment_intent")
                if item["id"] == played.ids[key]
            )
            event = stripe.emit_event("charge.refunded", "charge", charge)
        else:
            event = stripe.emit_event("refund.created", "refund", refund)
        played.events[f"{key}.refund"] = event
    elif step.action == "deliver":
        name = key if step.what == "payment" else f"{key}.refund"
        if name in played.events:
            deliver(stage, played.events[name])
            played.delivered.append(played.events[name])
            if step.what == "payment" and not payment.allowed:
                played.covered.add("rule-breaking webhook")
    elif step.action == "retry":
        again = top_up(stage, payment, key)
        first = played.topups[key]
        assert (again.status_code, again.json()) == (first.status_code, first.json()), key
        played.covered.add("top-up retried")
    elif step.action == "reuse":
        other = top_up(stage, payment, key, amount=payment.amount + 1)
        assert other.status_code == 409, (key, other.status_code, other.text)
        played.covered.add("top-up key reused")


def _cover_deliveries(played: Played) -> None:
    copies = Counter(played.delivered)
    if any(count > 1 for count in copies.values()):
        played.covered.add("duplicate delivery")
    created = {event: n for n, event in enumerate(played.events.values())}
    firsts = [created[event] for event in dict.fromkeys(played.delivered)]
    if firsts != sorted(firsts):
        played.covered.add("reordered delivery")


def _event_about(stripe: FakeStripe, object_id: str, event_type: str) -> str:
    return next(
        event["id"]
        for event in stripe.events()
        if event["type"] == event_type and event["data"]["object"]["id"] == object_id
    )


def top_up(stage: Stage, payment: Payment, key: str, amount: int | None = None) -> httpx.Response:
    """Call ``/top-up`` for ``payment`` under the Idempotency-Key ``key``."""
    value = Decimal(amount if amount is not None else payment.amount).scaleb(
        -EXPONENT[payment.currency]
    )
    body = {
        "customer_id": payment.customer.stripe_id,
        "amount": str(value),
        "currency": payment.currency,
    }
    answer = httpx.post(
        f"{stage.url}/top-up",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": f"key-{key}"},
        timeout=30,
    )
    assert answer.status_code in (200, 409), (key, answer.status_code, answer.text)
    return answer


def deliver(stage: Stage, event_id: str) -> None:
    """POST one copy of a Stripe event to the webhook, signed as Stripe signs; expect 200."""
    event = next(event for event in stage.stripe.events() if event["id"] == event_id)
    body = json.dumps(event)
    answer = httpx.post(
        f"{stage.url}/webhooks/stripe",
        content=body.encode(),
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": sign(body, SECRET, int(time.time())),
        },
        timeout=30,
    )
    assert answer.status_code == 200, (event_id, answer.status_code, answer.text)


def stripe_payment_intents(stage: Stage) -> set[str]:
    """Every PaymentIntent the fake Stripe holds."""
    return {str(item["id"]) for item in stage.stripe.objects("payment_intent")}
