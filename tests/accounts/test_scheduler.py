"""The built-in scheduler (``jobs.nightly``) with ``STRIPE_ACCOUNTS``: one run per account.

On SQLite the accounts are read in turn in the scheduler's process; the PostgreSQL path (jobs
deferred to ``reconcile worker`` processes) is tested beside the workers in ``test_worker.py``.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from jobs import nightly
from reconcile.config import Settings
from tests.accounts.test_in_turn import _runs, seed_two_accounts
from tests.e2e.conftest import World
from tests.e2e.test_lifecycle import receiver  # noqa: F401
from tests.operator.conftest import Receiver

LOOKBACK = timedelta(hours=72)


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def metrics_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "reconcile.prom"
    monkeypatch.setenv("RECONCILE_METRICS_FILE", str(path))
    return path


def test_each_account_starts_at_the_fire_time_minus_the_lookback_then_at_its_watermark(
    world: World, monkeypatch: pytest.MonkeyPatch, metrics_file: Path
) -> None:
    first, second, paid_first, paid_second = seed_two_accounts(world)
    monkeypatch.setenv("STRIPE_ACCOUNTS", "all")

    # No watermark anywhere yet: each account's first run starts at fire time - lookback.
    assert nightly.fire(Settings.from_env(), world.now, trigger="scheduler") == 0

    assert sorted(body["transaction_id"] for body in world.moesif.posts) == sorted(
        [paid_first, paid_second]
    )
    runs = _runs(world)
    assert sorted(run.stripe_account for run in runs) == [first, second]
    assert {(run.since, run.until, run.trigger) for run in runs} == {
        (world.now - LOOKBACK, world.now, "scheduler")
    }
    assert all(run.watermark == world.now for run in runs)
    # The key's own account was never run: the scheduler ran the accounts, not the platform.
    assert all(run.stripe_account is not None for run in runs)
    assert "reconcile_last_exit_code 0" in metrics_file.read_text()

    # The next fire: each account continues from its own watermark minus the lookback.
    late = world.stripe.account(second).add_payment_intent(
        "cus_shared", 700, created=world.now + timedelta(seconds=1)
    )
    later = world.now + timedelta(minutes=5)
    assert nightly.fire(Settings.from_env(), later, trigger="scheduler") == 0

    assert late in [body["transaction_id"] for body in world.moesif.posts]
    rerun = _runs(world)[2:]
    assert sorted(run.stripe_account for run in rerun) == [first, second]
    assert {(run.since, run.until) for run in rerun} == {(world.now - LOOKBACK, later)}


def test_an_account_with_a_watermark_keeps_it_while_a_new_account_starts_fresh(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, _, _ = seed_two_accounts(world)
    monkeypatch.setenv("STRIPE_ACCOUNTS", first)
    assert nightly.fire(Settings.from_env(), world.now, trigger="scheduler") == 0

    # A day later the second account joins the list.
    later = world.now + timedelta(days=1)
    monkeypatch.setenv("STRIPE_ACCOUNTS", f"{first},{second}")
    assert nightly.fire(Settings.from_env(), later, trigger="scheduler") == 0

    since = {run.stripe_account: run.since for run in _runs(world)[1:]}
    assert since == {first: world.now - LOOKBACK, second: later - LOOKBACK}


def test_one_account_failing_gives_the_worst_exit_and_the_others_go_on(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    metrics_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, _, paid_first, _ = seed_two_accounts(world)
    monkeypatch.setenv("STRIPE_ACCOUNTS", f"acct_unknown,{first}")

    with caplog.at_level(logging.INFO):
        assert nightly.fire(Settings.from_env(), world.now, trigger="once") == 2

    assert [body["transaction_id"] for body in world.moesif.posts] == [paid_first]
    ended = {run.stripe_account: (run.status, run.exit_code) for run in _runs(world)}
    assert ended == {"acct_unknown": ("failed", 2), first: ("succeeded", 0)}
    failures = [r.getMessage() for r in caplog.records if "run failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].startswith("once run failed (exit 2)")
    # Metrics are written after each account, as a cron run with STRIPE_ACCOUNTS writes them.
    assert "reconcile_last_exit_code 0" in metrics_file.read_text()


def test_an_account_with_drift_is_notified_under_its_own_run(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    receiver: Receiver,  # noqa: F811
) -> None:
    first, second, _, _ = seed_two_accounts(world)
    # A payment of a customer mapped to no Moesif company: flagged for review, exit 1.
    world.stripe.account(second).add_customer("cus_unmapped")
    world.stripe.account(second).add_payment_intent(
        "cus_unmapped", 900, created=world.now - timedelta(hours=2)
    )
    monkeypatch.setenv("STRIPE_ACCOUNTS", f"{first},{second}")

    assert nightly.fire(Settings.from_env(), world.now, trigger="scheduler") == 1

    [payload] = receiver.payloads()
    runs = {run.id: run for run in _runs(world)}
    assert payload["exit_code"] == 1
    assert runs[str(payload["run_id"])].stripe_account == second


def test_a_failure_to_list_the_accounts_is_exit_3_and_runs_none(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seed_two_accounts(world)
    monkeypatch.setenv("STRIPE_ACCOUNTS", "all")
    world.stripe.fail_next(503, count=100)  # listing the accounts fails

    with caplog.at_level(logging.INFO):
        assert nightly.fire(Settings.from_env(), world.now, trigger="scheduler") == 3

    # Nothing but the listing was asked for: no account's run started.
    assert {request.path for request in world.stripe.requests} == {"/v1/accounts"}
    assert world.moesif.posts == []
    assert any("scheduler run failed (exit 3)" in r.getMessage() for r in caplog.records)


def test_once_with_accounts_logs_each_account_and_exits_with_the_worst(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, _, _ = seed_two_accounts(world)
    monkeypatch.setenv("STRIPE_ACCOUNTS", f"{first},{second}")
    monkeypatch.setenv("RECONCILE_LOG_FORMAT", "json")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert nightly.main(["--once"]) == 0
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)

    messages = [json.loads(line)["message"] for line in capsys.readouterr().err.splitlines()]
    assert any(
        message.startswith(f"once run of the connected accounts ({first},{second})")
        for message in messages
    )
    assert "once run of the connected accounts ended with exit 0" in messages
    assert sorted(run.stripe_account for run in _runs(world)) == [first, second]


class _StopOn(logging.Handler):
    """Asks the scheduler to stop, as its SIGTERM handler does, once a log line says ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            nightly.STOPPING.set()


def test_a_stop_during_an_account_ends_the_fire_after_it_and_the_next_reads_the_rest(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first, second, paid_first, paid_second = seed_two_accounts(world)
    monkeypatch.setenv("STRIPE_ACCOUNTS", f"{first},{second}")
    stop = _StopOn(f"account {first} (1 of 2)")
    logging.getLogger("reconcile.accounts.in_turn").addHandler(stop)
    try:
        with caplog.at_level(logging.INFO):
            assert nightly.fire(Settings.from_env(), world.now, trigger="scheduler") == 0
    finally:
        logging.getLogger("reconcile.accounts.in_turn").removeHandler(stop)
        nightly.STOPPING.clear()

    # The account in hand was finished; the other was not begun.
    assert [body["transaction_id"] for body in world.moesif.posts] == [paid_first]
    assert [run.stripe_account for run in _runs(world)] == [first]
    assert not [r for r in world.stripe.requests if r.stripe_account == second]
    told = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopping:")]
    assert told == [
        f"stopping: 1 connected account(s) not read this time ({second}); the next run reads "
        "each from its own watermark"
    ]

    later = world.now + timedelta(minutes=5)
    assert nightly.fire(Settings.from_env(), later, trigger="scheduler") == 0
    assert paid_second in [body["transaction_id"] for body in world.moesif.posts]
    since = {run.stripe_account: run.since for run in _runs(world)[1:]}
    assert since == {first: world.now - LOOKBACK, second: later - LOOKBACK}
