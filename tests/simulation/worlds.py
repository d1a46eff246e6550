"""Seed a generated history into the fakes, inject its faults, and run the job until it settles.

The job is driven only through its outside interfaces: the command line (in this process, or as
a subprocess that the fake Moesif can SIGKILL at the Nth request) and the two fakes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import reconcile
from reconcile.cli import main
from reconcile.fakes.moesif import DEFAULT_ORDER_SEED, Exchange, FakeMoesif, Verdict
from reconcile.fakes.stripe import FakeStripe
from tests.e2e.conftest import MOESIF_TOKEN, STRIPE_KEY, World
from tests.e2e.test_crash import POST_PATH, _job
from tests.simulation.histories import Customer, Faults, History, Movement, Payment, major

ELSEWHERE = ("co_elsewhere", "sub_elsewhere")
"""Where misapplied rows sit: another company's subscription (Moesif's webhook credits the
customer's first Stripe subscription, which may be anyone's)."""
POISONED = ("co_poisoned", "sub_poisoned")
POISONED_CUSTOMER = "cus_sim_poisoned"
SOURCE_ROOT = str(Path(reconcile.__file__).resolve().parent.parent)
"""The folder holding the ``reconcile`` package under test."""
RERUNS = 8
"""Runs allowed for one world to settle; faults are finite, so more means a stuck job."""


class _Unparseable(Decimal):
    """An amount the fake serves as the JSON text ``"12,50"`` (its balance still counts 12.50)."""

    def __format__(self, spec: str) -> str:
        return '"12,50"'


@dataclass
class Seeded:
    """A world seeded with a history: the fakes, and the ids they handed out."""

    world: World
    history: History
    ids: dict[str, str] = field(default_factory=dict)
    """Logical name (customer, payment, movement, poison) to the id the fakes use."""
    places: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Customer key to its Moesif (company_id, subscription_id), for mapped customers."""
    exit_codes: list[int] = field(default_factory=list)

    def names(self) -> dict[str, str]:
        """Actual id to logical name, to compare worlds seeded in different orders."""
        names = {actual: name for name, actual in self.ids.items()}
        for key, (company, subscription) in self.places.items():
            names.setdefault(company, f"{key}.company")
            names.setdefault(subscription, f"{key}.subscription")
        return names

    def tid(self, movement: Movement) -> str:
        """Return the transaction id of ``movement`` in this world."""
        return self.ids[movement.key]


@contextmanager
def open_world(
    database_url: str,
    directory: Path,
    order_seed: int | None = DEFAULT_ORDER_SEED,
) -> Iterator[World]:
    """Start both fakes and return a world pointing the job at them, with tiny retry delays.

    ``order_seed`` picks the order both fakes list in.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with (
        FakeStripe(api_key=STRIPE_KEY, order_seed=order_seed) as stripe,
        FakeMoesif(token=MOESIF_TOKEN, order_seed=order_seed) as moesif,
    ):
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
            # The job's subprocess runs the code this process imports, not an installed copy.
            "PYTHONPATH": os.pathsep.join(
                [SOURCE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            # The simulated Moesif lists every row it applied at once (no report lag) and the
            # reruns follow each other within seconds of real time; with the default lag they
            # would rightly wait instead of settling. Report lag has its own tests
            # (tests/posting/test_engine.py, tests/e2e/test_crash.py).
            "RECONCILE_MOESIF_REPORT_LAG": "0",
        }
        yield World(
            stripe=stripe,
            moesif=moesif,
            now=datetime.now(UTC).replace(microsecond=0),
            database_url=database_url,
            report_dir=directory / "reports",
            environment=environment,
        )


# Seeding.


def seed(world: World, history: History, shuffle: bool) -> Seeded:
    """Seed ``history`` into the world's fakes; ``shuffle`` seeds it in another order."""
    seeded = Seeded(world, history)
    world.moesif.add_subscription(ELSEWHERE[1], ELSEWHERE[0], currency="usd")
    order = random.Random(history.shuffle_seed) if shuffle else None
    customers = list(history.customers)
    if order is not None:
        order.shuffle(customers)
    units: list[Callable[[], None]] = []
    for customer in customers:
        _add_customer(seeded, customer)
        units.extend(_payment_unit(seeded, customer, payment) for payment in customer.payments)
        units.extend(_extra_unit(seeded, customer, extra) for extra in customer.extras)
    if history.poisons:
        _add_poisoned_customer(world)
        units.extend(_poison_unit(seeded, poison) for poison in history.poisons)
    if order is not None:
        order.shuffle(units)
    for unit in units:
        unit()
    return seeded


def _add_customer(seeded: Seeded, customer: Customer) -> None:
    stripe, moesif = seeded.world.stripe, seeded.world.moesif
    stripe_id = f"cus_sim_{customer.key}"
    seeded.ids[customer.key] = stripe_id
    if customer.mapping == "metadata":
        company, subscription = f"co_{customer.key}", f"sub_sim_{customer.key}"
        metadata = {"moesif_company_id": company, "moesif_subscription_id": subscription}
        stripe.add_customer(id=stripe_id, metadata=metadata)
    else:
        stripe.add_customer(id=stripe_id)
    if customer.mapping == "single_subscription":
        stripe.add_subscription(stripe_id, status="canceled")
        company, subscription = stripe_id, stripe.add_subscription(stripe_id)
        seeded.ids[f"{customer.key}.subscription"] = subscription
    if customer.mapping == "several_subscriptions":
        for n in range(2):
            seeded.ids[f"{customer.key}.subscription{n}"] = stripe.add_subscription(stripe_id)
    if customer.mapped:
        moesif.add_subscription(subscription, company, currency=customer.currency)
        seeded.places[customer.key] = (company, subscription)


def _ago(world: World, minutes: int) -> datetime:
    return world.now - timedelta(minutes=minutes)


def _payment_unit(seeded: Seeded, customer: Customer, payment: Payment) -> Callable[[], None]:
    def unit() -> None:
        stripe = seeded.world.stripe
        payment_intent = stripe.add_payment_intent(
            seeded.ids[customer.key],
            payment.amount,
            currency=customer.currency,
            metadata={"moesif_topup": "false"} if payment.kind == "not_topup" else None,
            invoice=f"in_sim_{payment.key}" if payment.kind == "invoice" else None,
            created=_ago(seeded.world, payment.minutes_ago),
        )
        seeded.ids[payment.key] = payment_intent
        dispute = ""
        for movement in payment.movements:
            moment = _ago(seeded.world, movement.minutes_ago)
            name = movement.key.split(".")[1]
            if name == "credit":
                tid = payment_intent
            elif name.startswith("refund"):
                tid = stripe.add_refund(payment_intent, amount=movement.amount, created=moment)
            elif name == "withdrawn":
                dispute = stripe.add_dispute(payment_intent, created=moment)
                seeded.ids[f"{payment.key}.dispute"] = dispute
                tid = _withdrawal(stripe, dispute)
            else:
                tid = stripe.reinstate_dispute(dispute, created=moment)
            seeded.ids[movement.key] = tid
            if customer.mapped and payment.kind == "topup":
                _ledger_rows(seeded, customer, movement, tid)

    return unit


def _withdrawal(stripe: FakeStripe, dispute_id: str) -> str:
    dispute = next(item for item in stripe.objects("dispute") if item["id"] == dispute_id)
    return str(dispute["balance_transactions"][0])


def random_id(movement: Movement) -> str:
    """The fresh random id a webhook gave its row for ``movement`` (stable across worlds)."""
    return "evt_" + hashlib.sha256(movement.key.encode()).hexdigest()[:24]


def _ledger_rows(seeded: Seeded, customer: Customer, movement: Movement, tid: str) -> None:
    moesif = seeded.world.moesif
    company, subscription = seeded.places[customer.key]
    amount = major(movement.amount, customer.currency)
    moment = _ago(seeded.world, movement.minutes_ago) + timedelta(minutes=1)
    rows: list[tuple[str, str, Decimal, str]] = {
        "correct": [(company, subscription, amount, tid)],
        "missing": [],
        "doubled": [(company, subscription, amount, tid)]
        + [(company, subscription, amount, random_id(movement))],
        "random_id": [(company, subscription, amount, random_id(movement))],
        "cents": [(company, subscription, Decimal(movement.amount), tid)],
        "misapplied": [(*ELSEWHERE, amount, tid)],
    }[movement.ledger]
    for n, (row_company, row_subscription, row_amount, row_tid) in enumerate(rows):
        moesif.add_row(
            row_company,
            row_subscription,
            movement.entry_type,
            row_amount,
            moment + timedelta(minutes=n),
            transaction_id=row_tid,
            description="webhook: top-up",
        )


def _extra_unit(seeded: Seeded, customer: Customer, extra) -> Callable[[], None]:  # noqa: ANN001
    def unit() -> None:
        company, subscription = seeded.places[customer.key]
        moment = _ago(seeded.world, extra.minutes_ago)
        kind = {"manual_credit": "credit", "promotion": "promotion", "usage": "usage"}[extra.kind]
        seeded.world.moesif.add_row(
            company,
            subscription,
            kind,
            extra.amount,
            moment,
            description=f"{extra.kind.replace('_', ' ')} {extra.key}",
            billing_meter_id="meter_api_calls" if extra.kind == "usage" else None,
        )

    return unit


def _add_poisoned_customer(world: World) -> None:
    company, subscription = POISONED
    world.moesif.add_subscription(subscription, company, currency="usd")
    world.stripe.add_customer(
        id=POISONED_CUSTOMER,
        metadata={"moesif_company_id": company, "moesif_subscription_id": subscription},
    )


def _poison_unit(seeded: Seeded, poison) -> Callable[[], None]:  # noqa: ANN001
    def unit() -> None:
        world = seeded.world
        moment = _ago(world, poison.minutes_ago)
        stripe_amounts = {
            "negative_amount": (-500, "usd"),
            "unknown_currency": (1234, "xyz"),
            "huge_amount": (10**15, "usd"),
        }
        if poison.kind in stripe_amounts:
            amount, currency = stripe_amounts[poison.kind]
            seeded.ids[poison.key] = world.stripe.add_payment_intent(
                POISONED_CUSTOMER, amount, currency=currency, created=moment
            )
            return
        tid = f"manual_{poison.key}"
        seeded.ids[poison.key] = tid
        description = "manual\x00credit" if poison.kind == "nul_description" else "manual credit"
        amount = Decimal("1e50") if poison.kind == "huge_moesif_amount" else Decimal("12.34")
        if poison.kind == "bad_amount":
            amount = _Unparseable("12.50")
        world.moesif.add_row(
            *POISONED, "credit", amount, moment, transaction_id=tid, description=description
        )

    return unit


# Faults.


@dataclass(frozen=True)
class Kill:
    """A SIGKILL the hook delivered: at a POST or another request, and what Moesif did."""

    on_post: bool
    transaction_id: str | None
    applied: bool
    """Whether Moesif applied the POST the job was killed at (never, for other requests)."""


class _FaultHook:
    """The fake Moesif's ``on_request``: fires each planned fault once, and the kill.

    The kill counts requests, or with ``kill_on_post`` only POSTs. It is sent when that request
    arrives; the fake then drops it unapplied (verdict ``drop``: killed before Moesif applied
    it), or applies it and drops the answer (``apply_then_drop``: the job, blocked on the
    answer, dies after Moesif applied it), or answers it (``None``).
    """

    def __init__(self, seeded: Seeded, faults: Faults) -> None:
        self.seeded = seeded
        self.pending = list(faults.moesif)
        self.kill_at = faults.kill_at
        self.kill_verdict = faults.kill_verdict
        self.kill_on_post = faults.kill_on_post
        self.requests = 0
        self.posts = 0
        self.job: subprocess.Popen[bytes] | None = None
        self.job_requests = 0
        self.job_posts = 0
        self.kills: list[Kill] = []
        self._killed: tuple[bool, str | None, int] | None = None

    def start(self, job: subprocess.Popen[bytes]) -> None:
        """Watch a new job process: the kill counts the requests of this run only."""
        self.job, self.job_requests, self.job_posts = job, 0, 0

    def finish(self) -> None:
        """The job ended; a kill it never reached moves within the next run's reach.

        A kill on a POST that a run without POSTs never reached is dropped: none will come.
        """
        if self._killed is not None:
            on_post, tid, before = self._killed
            applied = tid is not None and self._applied_since(tid, before)
            self.kills.append(Kill(on_post, tid, applied))
            self._killed = None
        reached = self.job_posts if self.kill_on_post else self.job_requests
        if self.kill_at is not None:
            self.kill_at = (self.kill_at - 1) % reached + 1 if reached else None
        self.job = None

    def _applied_since(self, tid: str, before: int) -> bool:
        """Whether Moesif applied ``tid`` since it counted ``before``.

        The fake applies an ``apply_then_drop`` POST on its own thread while the job dies, so
        this waits (a second at most) for that thread, not for any backoff.
        """
        moesif = self.seeded.world.moesif
        waits = 100 if self.kill_verdict == "apply_then_drop" else 0
        for _ in range(waits):
            if moesif.applied_count(tid) > before:
                return True
            time.sleep(0.01)
        return moesif.applied_count(tid) > before

    def __call__(self, exchange: Exchange) -> Verdict | None:
        self.requests += 1
        self.job_requests += 1
        is_post = exchange.method == "POST" and exchange.path == POST_PATH
        self.posts += is_post
        self.job_posts += is_post
        counted = self.job_posts if self.kill_on_post else self.job_requests
        if (
            self.job is not None
            and self.kill_at is not None
            and (is_post or not self.kill_on_post)
            and counted >= self.kill_at
        ):
            self.kill_at = None
            tid = _posted_id(exchange) if is_post else None
            before = self.seeded.world.moesif.applied_count(tid) if tid else 0
            self._killed = (is_post, tid, before)
            if tid is not None and self.kill_verdict == "apply_then_drop":
                # Moesif's reports lag its ledger: the next read lacks the row it applies now,
                # so only a read-back of the posting can tell the rerun not to send it again.
                self.seeded.world.moesif.omit(tid, reads=1)
            os.kill(self.job.pid, signal.SIGKILL)
            return self.kill_verdict  # type: ignore[return-value]
        for fault in list(self.pending):
            kind, nth, on_posts = fault
            if (self.posts if on_posts else self.requests) < nth or (on_posts and not is_post):
                continue
            self.pending.remove(fault)
            if kind == "drop_before":
                return "drop"
            if kind == "drop_after":
                return "apply_then_drop"
            headers = {"Retry-After": "0"} if kind == "429" and nth % 2 else None
            self.seeded.world.moesif.fail_next(int(kind), headers=headers)
        return None


def _posted_id(exchange: Exchange) -> str | None:
    """The transaction id of a POST body, if it has one."""
    try:
        body = json.loads(exchange.body)
    except ValueError:
        return None
    tid = body.get("transaction_id") if isinstance(body, dict) else None
    return tid if isinstance(tid, str) else None


def inject_faults(seeded: Seeded) -> _FaultHook:
    """Queue the history's Stripe faults and install its Moesif fault hook."""
    faults = seeded.history.faults
    for status in faults.stripe:
        # Retry-After 0: Stripe's backoff is fixed in the client, and no test may sleep on it.
        seeded.world.stripe.fail_next(int(status), headers={"Retry-After": "0"})
    hook = _FaultHook(seeded, faults)
    seeded.world.moesif.on_request = hook
    return hook


# Running.


def run_in_process(world: World) -> int:
    """Run the job once through its command line, in this process; return its exit code."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in world.environment.items():
            patch.setenv(name, value)
        patch.chdir(world.report_dir.parent)
        return main(["--since", world.since])


def run_subprocess(world: World, hook: _FaultHook) -> int:
    """Run the job as a subprocess the hook may SIGKILL; return its exit status."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(world.report_dir.parent)
        job = _job(world)
    hook.start(job)
    _, err = job.communicate(timeout=120)
    hook.finish()
    text = err.decode(errors="replace")
    assert "Traceback" not in text, text
    return job.returncode


def settled(world: World) -> bool:
    """Whether the latest report leaves nothing to post (no ``would_post``, ``post_failed``)."""
    reports = world.reports()
    if not reports:
        return False
    actions = {row["action"] for row in world.report_rows(reports[-1])}
    return not actions & {"would_post", "post_failed"}


def leave_rows_out(world: World, omit: tuple[float, int] | None) -> None:
    """From now on Moesif leaves a seeded share of its rows out of the first read listing each.

    Only rows a run may have seen already are left out: a read that lacks a row the job knows
    proves nothing (contract section 5: gone only after a targeted read lacks it too). A row
    the job never saw, left out of its first read, is one no job could tell from a missing one.
    """
    if omit is not None:
        world.moesif.omit_share, world.moesif.omit_seed = omit
        world.moesif.omit_reads = 1


def converge(
    seeded: Seeded,
    hook: _FaultHook | None = None,
    omit: tuple[float, int] | None = None,
    after_each: Callable[[], None] | None = None,
) -> None:
    """Rerun the job until it exits 0 or 1 with nothing left to post, at most :data:`RERUNS`.

    While the hook still has a kill to deliver, the job runs as a subprocess (and runs again
    until the kill has happened); else in-process. After the first run, reads leave out the
    share of rows ``omit`` names (see :func:`leave_rows_out`). ``after_each`` is called after
    every run (to check what must hold between runs too).
    """
    world = seeded.world
    for run in range(RERUNS):
        if run == 1:
            leave_rows_out(world, omit)
        before = len(world.reports())
        if hook is not None and hook.kill_at is not None:
            code = run_subprocess(world, hook)
        else:
            code = run_in_process(world)
        seeded.exit_codes.append(code)
        if after_each is not None:
            after_each()
        if code == 75:
            time.sleep(0.1)  # the killed holder's lock is on its way out; not a backoff
            continue
        assert code in (0, 1, 3, -signal.SIGKILL), f"unexpected exit {code}: {seeded.exit_codes}"
        kill_pending = hook is not None and hook.kill_at is not None
        if code in (0, 1) and len(world.reports()) > before and settled(world) and not kill_pending:
            return
    raise AssertionError(f"the job did not settle in {RERUNS} runs: exits {seeded.exit_codes}")
