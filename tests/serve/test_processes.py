"""Real ``python -m reconcile serve`` processes on one database: two at once, and a crash."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select, update

from reconcile.db.models import WebhookEvent
from reconcile.fakes.moesif import Exchange, FakeMoesif, Verdict
from reconcile.fakes.stripe import FakeStripe
from tests.serve.conftest import MOESIF_TOKEN, SECRET, STRIPE_KEY
from tests.serve.test_command import _environment, _free_port, _wait_for, _wait_until_healthy
from tests.serve.test_live_path import deliver_concurrently, paid_events, posts_per_id


@pytest.fixture
def fakes() -> Iterator[tuple[FakeStripe, FakeMoesif]]:
    with FakeStripe(api_key=STRIPE_KEY) as stripe, FakeMoesif(token=MOESIF_TOKEN) as moesif:
        moesif.add_subscription("sub_m1", "co_1")
        yield stripe, moesif


@contextmanager
def serving(
    tmp_path: Path,
    engine: Engine,
    stripe: FakeStripe,
    moesif: FakeMoesif,
    name: str,
    report_lag: str | None = None,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run one ``serve`` process on ``engine``'s database; stop it with SIGTERM on leaving."""
    environ = _environment(tmp_path, stripe.base_url, moesif.base_url)
    if report_lag is not None:
        environ["RECONCILE_MOESIF_REPORT_LAG"] = report_lag
    environ["RECONCILE_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    environ["RECONCILE_CONSOLE_TOKEN"] = "console-token-for-tests-long-enough-01"
    port = _free_port()
    with (tmp_path / f"{name}.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconcile", "serve", "--port", str(port)],
            env=environ,
            cwd=tmp_path,
            stdout=log,
            stderr=log,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_healthy(url, process)
            yield url, process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def event_statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as connection:
        return Counter(connection.scalars(select(WebhookEvent.status)))


def test_two_serve_processes_draining_one_database_post_each_id_once(
    tmp_path: Path, engine: Engine, fakes: tuple[FakeStripe, FakeMoesif]
) -> None:
    stripe, moesif = fakes
    payments = paid_events(stripe, 30)
    with (
        serving(tmp_path, engine, stripe, moesif, "a") as (first, one),
        serving(tmp_path, engine, stripe, moesif, "b") as (second, _two),
    ):
        assert httpx.get(f"{first}/login", timeout=30).status_code == 200
        answers = deliver_concurrently([first, second], stripe.events(), copies=2)
        assert answers == [200] * 60
        _wait_for(lambda: event_statuses(engine) == {"posted": 30}, one)
    assert posts_per_id(moesif) == Counter({payment: 1 for payment in payments})


def test_a_crash_between_recording_and_posting_is_posted_once_after_a_restart(
    tmp_path: Path, engine: Engine, fakes: tuple[FakeStripe, FakeMoesif]
) -> None:
    stripe, moesif = fakes
    [payment] = paid_events(stripe, 1)
    holding, release = threading.Event(), threading.Event()

    def hold_posts(exchange: Exchange) -> Verdict | None:
        if exchange.method != "POST":
            return None
        holding.set()
        release.wait(60)
        return "drop"

    moesif.on_request = hold_posts
    with serving(tmp_path, engine, stripe, moesif, "killed") as (url, process):
        stripe.configure_webhook(f"{url}/webhooks/stripe", SECRET)
        assert stripe.deliver() == [200]
        _wait_for(holding.is_set, process)
        process.kill()
        process.wait(timeout=60)
    release.set()
    moesif.on_request = None
    assert moesif.posts == []
    assert event_statuses(engine) == {"received": 1}

    with engine.begin() as connection:  # the killed process's lease on the event runs out
        connection.execute(update(WebhookEvent).values(next_attempt_at=WebhookEvent.received_at))
    # The killed process may have sent it; the point here is the crash, not Moesif's reports
    # lagging, so the restarted process trusts an immediate read-back (a lag of 0).
    with serving(tmp_path, engine, stripe, moesif, "restarted", report_lag="0") as (
        _url,
        restarted,
    ):
        _wait_for(lambda: event_statuses(engine) == {"posted": 1}, restarted)
    assert posts_per_id(moesif) == {payment: 1}
