"""``reconcile demo``: the real job against the bundled fake Stripe and fake Moesif, over HTTP.

It seeds a history with every drift category, runs one reconciliation, prints the summary and
the report path, then runs again to show that nothing is posted twice. Then it starts ``serve``
in-process, tops a customer up through ``/top-up``, lets the fake Stripe deliver the webhook
twice, shows the credit in Moesif once, and runs the nightly job again: it posts nothing for it.
With ``--serve`` it leaves both fakes running and prints the settings to point a real run at them.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy.orm import sessionmaker

from reconcile.clients import open_clients, utc_now
from reconcile.config import Secret, ServeSettings, Settings
from reconcile.db.engine import make_engine
from reconcile.domain.times import to_iso
from reconcile.errors import ExitCode, ReconcileError
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe
from reconcile.run import RunRequest, execute
from reconcile.serve.app import ServeParts, create_app
from reconcile.serve.command import posting_step
from reconcile.serve.limits import server_config
from reconcile.stripe.client import build_stripe_client

DEMO_STRIPE_KEY = "sk_test_demo_not_a_real_key"
DEMO_MOESIF_TOKEN = "demo-management-token"
DEMO_WEBHOOK_SECRET = "whsec_demo_not_a_real_secret"
DEMO_TOPUP_TOKEN = "demo-topup-token"
HISTORY = timedelta(days=7)
LIVE_WAIT = 30.0
"""Seconds the demo waits at most for ``serve`` to post the live top-up."""


@dataclass(frozen=True)
class Customer:
    """A seeded Stripe customer and the Moesif subscription it maps to."""

    stripe_id: str
    company_id: str
    subscription_id: str


def _customer(
    stripe: FakeStripe, moesif: FakeMoesif, company: str, currency: str = "usd"
) -> Customer:
    subscription = f"sub_{company}"
    moesif.add_subscription(subscription, company, currency=currency)
    stripe_id = stripe.add_customer(
        metadata={"moesif_company_id": company, "moesif_subscription_id": subscription}
    )
    return Customer(stripe_id, company, subscription)


def _credit(
    moesif: FakeMoesif,
    who: Customer,
    amount: str,
    at: datetime,
    transaction_id: str | None,
    description: str,
) -> None:
    moesif.add_row(
        who.company_id,
        who.subscription_id,
        "credit",
        Decimal(amount),
        at,
        transaction_id=transaction_id,
        description=description,
    )


def seed(stripe: FakeStripe, moesif: FakeMoesif, now: datetime) -> None:
    """Seed a week of history that holds every drift category but two, relative to ``now``.

    :func:`seed_review_cases` adds the other two; the demo seeds both.
    """
    day = timedelta(days=1)
    minute = timedelta(minutes=1)

    acme = _customer(stripe, moesif, "acme")
    paid = stripe.add_payment_intent(acme.stripe_id, 5000, created=now - 5 * day)
    _credit(moesif, acme, "50.00", now - 5 * day + minute, paid, "webhook: top-up")
    lost = stripe.add_payment_intent(acme.stripe_id, 2500, created=now - 4 * day)
    stripe.add_refund(lost, amount=500, created=now - 2 * day)

    globex = _customer(stripe, moesif, "globex")
    stripe.add_payment_intent(globex.stripe_id, 10000, created=now - 3 * day)
    for attempt in (1, 2):
        _credit(moesif, globex, "100.00", now - 3 * day + attempt * minute, None, "webhook retry")

    initech = _customer(stripe, moesif, "initech")
    cents = stripe.add_payment_intent(initech.stripe_id, 1050, created=now - 3 * day)
    _credit(moesif, initech, "1050", now - 3 * day + minute, cents, "old webhook posted cents")
    _credit(moesif, initech, "20.00", now - 2 * day, None, "manual credit by support")
    moesif.add_row(
        initech.company_id, initech.subscription_id, "promotion", Decimal("5.00"), now - day
    )
    moesif.add_row(
        initech.company_id,
        initech.subscription_id,
        "usage",
        Decimal("3.20"),
        now - day,
        billing_meter_id="meter_api_calls",
    )

    umbrella = _customer(stripe, moesif, "umbrella", currency="jpy")
    stripe.add_payment_intent(umbrella.stripe_id, 5000, currency="jpy", created=now - 2 * day)

    hooli = _customer(stripe, moesif, "hooli", currency="usd")
    stripe.add_payment_intent(hooli.stripe_id, 3000, currency="eur", created=now - 2 * day)

    soylent = _customer(stripe, moesif, "soylent")
    disputed = stripe.add_payment_intent(soylent.stripe_id, 4000, created=now - 6 * day)
    _credit(moesif, soylent, "40.00", now - 6 * day + minute, disputed, "webhook: top-up")
    stripe.add_dispute(disputed, created=now - day)

    unmapped = stripe.add_customer()
    stripe.add_subscription(unmapped)
    stripe.add_subscription(unmapped)
    stripe.add_payment_intent(unmapped, 2000, created=now - day)

    stripe.add_payment_intent(acme.stripe_id, 9900, invoice="in_demo_monthly", created=now - day)
    stripe.add_payment_intent(
        acme.stripe_id, 1500, metadata={"moesif_topup": "false"}, created=now - day
    )
    stripe.add_payment_intent(acme.stripe_id, 7000, status="processing", created=now - day)


def seed_review_cases(stripe: FakeStripe, moesif: FakeMoesif, now: datetime) -> None:
    """Add a payment whose webhook credited another customer (``misapplied``) and one unreadable.

    The unreadable one is a payment in a currency that is not ISO 4217.
    """
    day = timedelta(days=1)
    acme = Customer("", "acme", "sub_acme")
    vandelay = _customer(stripe, moesif, "vandelay")
    paid = stripe.add_payment_intent(vandelay.stripe_id, 1200, created=now - 2 * day)
    _credit(moesif, acme, "12.00", now - 2 * day, paid, "webhook: first subscription")
    stripe.add_payment_intent(vandelay.stripe_id, 1234, currency="xyz", created=now - day)


def demo_settings(
    stripe: FakeStripe, moesif: FakeMoesif, database_url: str, reports: Path
) -> Settings:
    """Return settings that point the real job at the fakes."""
    return Settings(
        stripe_api_key=Secret(DEMO_STRIPE_KEY),
        moesif_token=Secret(DEMO_MOESIF_TOKEN),
        stripe_api_base=stripe.base_url,
        moesif_api_base=moesif.base_url,
        database_url=database_url,
        report_dir=reports,
        # The fake Stripe's report runs are ready at the second look: no need to wait long.
        stripe_report_poll_seconds=0.05,
    )


def reconcile_command(executable: str | None = None, cwd: Path | None = None) -> str:
    """Return a command line that runs reconcile from a new shell, with no environment activated.

    It names the interpreter running now, relative to ``cwd`` when it lies below it (as
    ``.venv/bin/python`` does in a checkout), else by its absolute path.

    Args:
        executable: the interpreter; ``sys.executable`` by default.
        cwd: the directory the command is meant to be typed in; the current one by default.
    """
    python = Path(executable or sys.executable)
    here = Path.cwd() if cwd is None else cwd
    shown = str(python.relative_to(here)) if python.is_relative_to(here) else str(python)
    if "/" not in shown:
        shown = f"./{shown}"
    return f"{shlex.quote(shown)} -m reconcile"


def main(argv: Sequence[str]) -> int:
    """Run the demo; return 0 when it showed what it should."""
    parser = argparse.ArgumentParser(prog="reconcile demo", description=__doc__)
    parser.add_argument("--report-dir", type=Path, default=Path("reports"))
    parser.add_argument(
        "--serve", action="store_true", help="keep the fakes running for your own runs"
    )
    args = parser.parse_args(argv)
    now = datetime.now(UTC).replace(microsecond=0)
    with (
        FakeStripe(api_key=DEMO_STRIPE_KEY) as stripe,
        FakeMoesif(token=DEMO_MOESIF_TOKEN) as moesif,
        tempfile.TemporaryDirectory(prefix="reconcile-demo-") as scratch,
    ):
        seed(stripe, moesif, now)
        seed_review_cases(stripe, moesif, now)
        if args.serve:
            return _serve(stripe, moesif, now)
        settings = demo_settings(
            stripe, moesif, f"sqlite:///{Path(scratch) / 'demo.db'}", args.report_dir
        )
        shown = _show(settings, moesif, now)
        if shown != ExitCode.OK:
            return shown
        return _show_live(settings, stripe, moesif, now)


def _show(settings: Settings, moesif: FakeMoesif, now: datetime) -> int:
    since = now - HISTORY
    print(
        f"Demo: fake Stripe at {settings.stripe_api_base}, fake Moesif at "
        f"{settings.moesif_api_base}\n"
    )
    print(f"$ {reconcile_command()} --since {to_iso(since)}\n")
    try:
        with open_clients(settings) as clients:
            first = execute(settings, RunRequest(since=since, trigger="demo"), clients, now=now)
        print(first.summary)
        print(f"\nexit code {int(first.exit_code)}\n")
        again = f"$ {reconcile_command()} --since {to_iso(since)}"
        print(f"{again}   # again: nothing may be posted twice\n")
        with open_clients(settings) as clients:
            second = execute(settings, RunRequest(since=since, trigger="demo"), clients)
    except ReconcileError as error:
        print(f"reconcile demo: error: {error}")
        return int(error.exit_code)
    print(
        f"second run {second.run_id}: posted {second.posted}, "
        f"exit code {int(second.exit_code)} (the flagged drift still needs review)"
    )
    twice = moesif.applied_more_than_once()
    if twice:
        print(f"Moesif applied these transaction ids more than once: {sorted(twice)}")
    print(f"\nThe report of the first run: {first.report_path}")
    once = second.posted == 0 and first.posted > 0 and not twice
    return ExitCode.OK if once else ExitCode.FAILED


def _show_live(settings: Settings, stripe: FakeStripe, moesif: FakeMoesif, now: datetime) -> int:
    """Top up through ``serve``, deliver the webhook twice, then run the nightly job again."""
    wayne = _customer(stripe, moesif, "wayne")
    stripe.set_default_payment_method(wayne.stripe_id, "pm_card_visa")
    try:
        with _serving(settings) as url:
            print(f"\n$ {reconcile_command()} serve --port {url.rsplit(':', 1)[1]}   # in-process")
            print(f"$ curl -X POST {url}/top-up -H 'Authorization: Bearer {DEMO_TOPUP_TOKEN}' \\")
            body = {"customer_id": wayne.stripe_id, "amount": "42.00", "currency": "usd"}
            print(f"    -H 'Idempotency-Key: demo-1' -d '{_json_text(body)}'")
            answer = httpx.post(
                f"{url}/top-up",
                json=body,
                headers={
                    "Authorization": f"Bearer {DEMO_TOPUP_TOKEN}",
                    "Idempotency-Key": "demo-1",
                },
                timeout=30,
            )
            print(f"{answer.status_code} {answer.text}")
            payment = str(answer.json().get("payment_intent_id"))
            stripe.configure_webhook(f"{url}/webhooks/stripe", DEMO_WEBHOOK_SECRET, duplicates=True)
            delivered = iter(stripe.deliver())
            for event in stripe.events():
                if event["data"]["object"].get("id") == payment:
                    answers = f"{next(delivered)}, {next(delivered)}"
                    print(f"Stripe delivered {event['type']} twice: answered {answers}")
            _wait_for_post(moesif, payment)
    except ReconcileError as error:
        print(f"reconcile demo: error: {error}")
        return int(error.exit_code)
    credits = [post for post in moesif.applied if post.transaction_id == payment]
    print(
        f"Moesif holds the top-up {len(credits)} time(s): "
        + ", ".join(f"{post.type} {post.amount} on {post.subscription_id}" for post in credits)
    )
    print(f"\n$ {reconcile_command()} --since {to_iso(now - HISTORY)}   # the nightly run after it")
    with open_clients(settings) as clients:
        nightly = execute(settings, RunRequest(since=now - HISTORY, trigger="demo"), clients)
    print(f"nightly run {nightly.run_id}: posted {nightly.posted} (the top-up was credited once)")
    once = moesif.applied_count(payment) == 1 and not moesif.applied_more_than_once()
    return ExitCode.OK if once and nightly.posted == 0 else ExitCode.FAILED


@contextlib.contextmanager
def _serving(settings: Settings) -> Iterator[str]:
    """Run ``serve`` in this process on a free port of 127.0.0.1; yield its URL."""
    engine = make_engine(settings.database_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    try:
        with posting_step(settings, sessions, utc_now) as live:
            app = create_app(
                ServeParts(
                    settings=ServeSettings(
                        webhook_secrets=(Secret(DEMO_WEBHOOK_SECRET),),
                        topup_token=Secret(DEMO_TOPUP_TOKEN),
                    ),
                    sessions=sessions,
                    stripe_client=build_stripe_client(settings),
                    post=live.post,
                    destinations=live.destinations,
                    clock=utc_now,
                )
            )
            server = uvicorn.Server(server_config(app, "127.0.0.1", 0))
            thread = threading.Thread(target=server.run, name="demo-serve", daemon=True)
            thread.start()
            try:
                while not server.started:
                    if not thread.is_alive():
                        raise ReconcileError("serve did not start")
                    threading.Event().wait(0.01)
                port = server.servers[0].sockets[0].getsockname()[1]
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
                thread.join(LIVE_WAIT)
    finally:
        engine.dispose()


def _wait_for_post(moesif: FakeMoesif, transaction_id: str) -> None:
    """Wait, at most :data:`LIVE_WAIT` seconds, until Moesif holds ``transaction_id``."""
    pause = threading.Event()
    for _tick in range(int(LIVE_WAIT / 0.05)):
        if moesif.applied_count(transaction_id):
            return
        pause.wait(0.05)


def _json_text(body: dict[str, str]) -> str:
    import json

    return json.dumps(body)


def _serve(stripe: FakeStripe, moesif: FakeMoesif, now: datetime) -> int:
    print("The fakes are running with a seeded history. In another shell:\n")
    print(f"export STRIPE_API_KEY={DEMO_STRIPE_KEY}")
    print(f"export STRIPE_API_BASE={stripe.base_url}")
    print(f"export MOESIF_MANAGEMENT_TOKEN={DEMO_MOESIF_TOKEN}")
    print(f"export MOESIF_API_BASE={moesif.base_url}")
    print("export RECONCILE_DATABASE_URL=sqlite:///demo-serve.db")
    print(f"{reconcile_command()} --since {to_iso(now - HISTORY)} --dry-run")
    print(f"{reconcile_command()} --since {to_iso(now - HISTORY)}")
    print("\nCtrl-C stops the fakes.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("\nstopped")
    return ExitCode.OK
