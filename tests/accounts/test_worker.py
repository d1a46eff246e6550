"""Connected accounts spread over ``reconcile worker`` processes on PostgreSQL (section 12).

The workers are real processes (``python -m reconcile worker``) against the fakes over HTTP and
the test's PostgreSQL; the run that defers the accounts runs in a thread of the test and waits
for them, as an operator's ``reconcile --accounts`` does.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from jobs import nightly
from reconcile.cli import main
from reconcile.config import Settings
from tests.e2e.conftest import World

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def database_url(postgres_database: str) -> str:
    engine = create_engine(postgres_database)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return postgres_database


@pytest.fixture
def start_worker(world: World, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "MOESIF_"))},
        **world.environment,
        "PYTHONPATH": str(ROOT),
        "RECONCILE_MOESIF_REPORT_LAG": "0",
    }

    def start(name: str, *extra: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "reconcile", "worker", "--name", name, *extra],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _defer_in_background(arguments: list[str]) -> tuple[threading.Thread, list[int]]:
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(main(arguments)), daemon=True)
    thread.start()
    return thread, code


def _fire_in_background() -> tuple[threading.Thread, list[int]]:
    code: list[int] = []
    settings = Settings.from_env()
    now = datetime.now(UTC).replace(microsecond=0)
    thread = threading.Thread(
        target=lambda: code.append(nightly.fire(settings, now, trigger="scheduler")), daemon=True
    )
    thread.start()
    return thread, code


def _jobs(world: World) -> list[tuple[str, str, int, int | None]]:
    engine = create_engine(world.database_url)
    try:
        with engine.connect() as connection:
            if connection.scalar(text("SELECT to_regclass('procrastinate_jobs')")) is None:
                return []
            return [
                (str(row[0]), str(row[1]), int(row[2]), row[3])
                for row in connection.execute(
                    text(
                        "SELECT args->>'stripe_account', status, attempts, worker_id"
                        " FROM procrastinate_jobs ORDER BY id"
                    )
                )
            ]
    finally:
        engine.dispose()


def _wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def _seed(world: World, accounts: int, payments: int) -> list[str]:
    paid = []
    for number in range(accounts):
        account = world.stripe.add_account(f"acct_{number}test")
        company = f"co_{number}"
        world.moesif.add_subscription(f"sub_{number}", company, currency="usd")
        # Every account's customer has the same id; each maps to its own company.
        account.add_customer(
            "cus_shared",
            metadata={"moesif_company_id": company, "moesif_subscription_id": f"sub_{number}"},
        )
        for amount in range(payments):
            paid.append(
                account.add_payment_intent(
                    "cus_shared",
                    100 * (number + 1) + amount,
                    created=world.now - timedelta(hours=1),
                )
            )
    return paid


def test_accounts_spread_over_several_workers_each_credit_posted_once(
    world: World,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    paid = _seed(world, accounts=4, payments=2)
    thread, code = _defer_in_background(["--since", world.since, "--accounts", "all"])
    _wait_for(lambda: len(_jobs(world)) == 4 or bool(code))
    assert not code

    workers = [start_worker(f"w{number}", "--until-empty") for number in range(2)]
    thread.join(timeout=180)

    assert code == [0]
    assert all(worker.wait(timeout=60) == 0 for worker in workers)
    posted = Counter(world.posted_ids())
    assert set(posted) == set(paid)
    assert set(posted.values()) == {1}
    by_id = {body["transaction_id"]: body for body in world.moesif.posts}
    for number in range(4):
        first = paid[2 * number]
        assert by_id[first]["company_id"] == f"co_{number}"
    jobs = _jobs(world)
    assert {status for _, status, _, _ in jobs} == {"succeeded"}
    # The shared Moesif budget counted every request the workers made.
    engine = create_engine(world.database_url)
    with engine.connect() as connection:
        counted = connection.scalar(text("SELECT SUM(used) FROM moesif_budget"))
    engine.dispose()
    assert counted == sum(world.moesif.requests_per_minute().values())
    capsys.readouterr()
    assert main(["worker", "--progress"]) == 0
    shown = capsys.readouterr().out.splitlines()[1:]
    assert sorted(line.split()[:2] for line in shown) == [
        [f"acct_{number}test", "succeeded"] for number in range(4)
    ]


def test_a_killed_workers_account_is_finished_by_another_exactly_once(
    world: World, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    paid = _seed(world, accounts=1, payments=6)
    world.moesif.delay_next(0.6, count=100, method="POST")
    thread, code = _defer_in_background(["--since", world.since, "--accounts", "acct_0test"])
    _wait_for(lambda: len(_jobs(world)) == 1 or bool(code))
    assert not code

    first = start_worker("first", "--stalled-after", "2")
    _wait_for(lambda: len(world.moesif.posts) >= 2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert len(world.moesif.posts) < len(paid)  # killed mid-account

    second = start_worker("second", "--stalled-after", "2")
    thread.join(timeout=180)
    assert code == [0]
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0  # a clean stop

    posted = Counter(world.posted_ids())
    assert set(posted) == set(paid)
    assert set(posted.values()) == {1}
    (job,) = _jobs(world)
    assert job[1] == "succeeded"
    assert job[2] >= 1  # taken up again
    engine = create_engine(world.database_url)
    with engine.connect() as connection:
        statuses = sorted(
            row[0]
            for row in connection.execute(
                text("SELECT status FROM runs WHERE stripe_account = 'acct_0test'")
            )
        )
    engine.dispose()
    assert statuses == ["crashed", "succeeded"]


def test_the_scheduler_defers_each_account_to_the_workers_and_waits_for_them(
    world: World,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paid = _seed(world, accounts=2, payments=1)
    monkeypatch.setenv("STRIPE_ACCOUNTS", "all")
    thread, code = _fire_in_background()
    _wait_for(lambda: len(_jobs(world)) == 2 or bool(code))
    assert not code  # it waits for the workers

    worker = start_worker("w0", "--until-empty")
    thread.join(timeout=180)

    assert code == [0]
    assert worker.wait(timeout=60) == 0
    posted = Counter(world.posted_ids())
    assert set(posted) == set(paid)
    assert set(posted.values()) == {1}
    engine = create_engine(world.database_url)
    with engine.connect() as connection:
        runs = list(
            connection.execute(text("SELECT stripe_account, since, until, trigger FROM runs"))
        )
    engine.dispose()
    assert sorted(run[0] for run in runs) == ["acct_0test", "acct_1test"]
    # No watermark yet: each account's first run starts at the fire time minus the lookback,
    # the start the scheduler handed the queue with the job.
    assert {run[2] - run[1] for run in runs} == {timedelta(hours=72)}
    assert {run[3] for run in runs} == {"worker"}


def test_a_stop_while_the_scheduler_waits_leaves_the_accounts_queued_for_the_workers(
    world: World,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    paid = _seed(world, accounts=2, payments=1)
    monkeypatch.setenv("STRIPE_ACCOUNTS", "all")
    with caplog.at_level(logging.INFO):
        try:
            thread, code = _fire_in_background()
            _wait_for(lambda: len(_jobs(world)) == 2 or bool(code))
            assert not code  # no worker yet: it waits
            nightly.STOPPING.set()  # as the scheduler's SIGTERM handler does
            thread.join(timeout=30)
        finally:
            nightly.STOPPING.clear()

    assert code == [0]
    assert [job[1] for job in _jobs(world)] == ["todo", "todo"]
    assert world.posted_ids() == []
    told = [r.getMessage() for r in caplog.records if "stopped waiting" in r.getMessage()]
    assert told == [
        "stopped waiting: 2 account(s) still queued or in hand (acct_0test,acct_1test); "
        "the workers finish them"
    ]

    worker = start_worker("w0", "--until-empty")
    assert worker.wait(timeout=180) == 0
    assert Counter(world.posted_ids()) == Counter(paid)
