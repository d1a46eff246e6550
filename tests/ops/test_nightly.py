from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
)
from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from freezegun import freeze_time
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from jobs import nightly
from reconcile.config import Settings
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.models import Run
from reconcile.domain.times import Window
from reconcile.errors import ConfigError, ExitCode, LockHeld, ReconcileError, RunFailed
from reconcile.run import RunOutcome, RunRequest

STRIPE_KEY = "sk_test_nightly_secret"
LOOKBACK = timedelta(hours=72)

CALLS: list[RunRequest] = []
WINDOWS: list[Window] = []
PLAN: list[Exception | ExitCode] = []
RUN_STARTED = threading.Event()
RUN_RELEASE = threading.Event()
RUN_FINISHED = threading.Event()


def record_run(settings: Settings, request: RunRequest, **_: object) -> RunOutcome:
    """A stand-in for reconcile.run.execute that behaves like it towards the runs table."""
    CALLS.append(request)
    engine = make_engine(settings.database_url)
    try:
        since = request.since or nightly.window_start(engine, request.until, settings.lookback)
        assert request.until is not None
        window = Window(since, request.until)
        WINDOWS.append(window)
        planned = PLAN.pop(0) if PLAN else ExitCode.OK
        if isinstance(planned, Exception):
            raise planned
        with Session(engine) as session, session.begin():
            session.add(
                Run(
                    id=f"run-{len(CALLS)}",
                    since=window.since,
                    until=window.until,
                    trigger=request.trigger,
                    status="succeeded",
                    exit_code=int(planned),
                    started_at=request.until,
                    finished_at=request.until + timedelta(seconds=30),
                    watermark=window.until,
                )
            )
    finally:
        engine.dispose()
    return RunOutcome(
        run_id=f"run-{len(CALLS)}",
        exit_code=planned,
        window=window,
        started_at=request.until,
        finished_at=request.until + timedelta(seconds=30),
        counts={"amount_mismatch": 1} if planned == ExitCode.DRIFT else {},
        posted=1,
    )


def slow_run(settings: Settings, request: RunRequest, **_: object) -> RunOutcome:
    """A run that takes until the test releases it."""
    RUN_STARTED.set()
    assert RUN_RELEASE.wait(5)
    RUN_FINISHED.set()
    assert request.until is not None
    return RunOutcome(
        run_id="slow",
        exit_code=ExitCode.OK,
        window=Window(request.until - LOOKBACK, request.until),
        started_at=request.until,
        finished_at=request.until,
    )


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    CALLS.clear()
    WINDOWS.clear()
    PLAN.clear()
    for event in (RUN_STARTED, RUN_RELEASE, RUN_FINISHED):
        event.clear()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> Settings:
    """Settings in the environment, as the scheduler reads them at each run."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    monkeypatch.setenv("MOESIF_MANAGEMENT_TOKEN", "moesif_token_nightly")
    monkeypatch.setenv("RECONCILE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("RECONCILE_METRICS_FILE", str(tmp_path / "reconcile.prom"))
    engine = make_engine(sqlite_url)
    upgrade_to_head(engine)
    engine.dispose()
    return Settings.from_env()


def at(text_time: str) -> datetime:
    return datetime.fromisoformat(text_time).replace(tzinfo=UTC)


# --- the schedule ---------------------------------------------------------------------------


def test_default_schedule_fires_daily_at_two_utc() -> None:
    trigger = nightly.cron_trigger("0 2 * * *")
    fires = [trigger.get_next_fire_time(None, at("2026-03-01T12:00:00"))]
    for _ in range(2):
        fires.append(trigger.get_next_fire_time(fires[-1], fires[-1] + timedelta(seconds=1)))
    assert fires == [
        at("2026-03-02T02:00:00"),
        at("2026-03-03T02:00:00"),
        at("2026-03-04T02:00:00"),
    ]
    assert all(fire.utcoffset() == timedelta(0) for fire in fires)


def test_scheduler_job_is_persisted_with_its_next_fire_time(env: Settings) -> None:
    with freeze_time("2026-03-01T12:00:00Z"):
        scheduler = nightly.build_scheduler(
            env, run=record_run, scheduler_class=BackgroundScheduler
        )
        scheduler.start(paused=True)
        job = scheduler.get_job(nightly.JOB_ID)
        scheduler.shutdown()
    assert job.next_run_time == at("2026-03-02T02:00:00")
    assert job.coalesce is True
    assert job.max_instances == 1
    assert job.misfire_grace_time == nightly.MISFIRE_GRACE_SECONDS
    assert job.func_ref == nightly.JOB_FUNC
    assert job.kwargs == {"schedule": "0 2 * * *", "run": record_run}
    rows = _stored_jobs(env)
    assert len(rows) == 1
    assert STRIPE_KEY.encode() not in rows[0][1]


def test_cron_weekdays_follow_cron_not_apscheduler(env: Settings) -> None:
    # 2026-03-01 is a Sunday: cron's 0 is Sunday, APScheduler 3's is Monday.
    sunday = nightly.cron_trigger("0 2 * * 0")
    assert sunday.get_next_fire_time(None, at("2026-02-27T00:00:00")) == at("2026-03-01T02:00:00")
    weekdays = nightly.cron_trigger("30 1 * * 1-5")
    assert weekdays.get_next_fire_time(None, at("2026-02-28T00:00:00")) == at("2026-03-02T01:30:00")
    every_other = nightly.cron_trigger("0 0 * * */2")  # sun, tue, thu, sat
    assert every_other.get_next_fire_time(None, at("2026-03-02T00:00:01")) == at(
        "2026-03-03T00:00:00"
    )
    with pytest.raises(ConfigError, match="RECONCILE_SCHEDULE"):
        nightly.cron_trigger("0 2 * * funday")
    with pytest.raises(ConfigError, match="RECONCILE_SCHEDULE"):
        nightly.cron_trigger("61 2 * * *")


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        ("0 2 * * *", "2026-03-05T02:30:00", "2026-03-05T02:00:00"),
        ("0 2 * * *", "2026-03-05T02:00:00", "2026-03-05T02:00:00"),
        ("0 2 * * *", "2026-03-05T01:59:59", "2026-03-04T02:00:00"),
        ("*/15 * * * *", "2026-03-05T10:44:00", "2026-03-05T10:30:00"),
        ("0 2 1 * *", "2026-03-15T00:00:00", "2026-03-01T02:00:00"),
    ],
)
def test_a_job_run_serves_the_latest_fire_time(schedule: str, now: str, expected: str) -> None:
    assert nightly.previous_fire_time(nightly.cron_trigger(schedule), at(now)) == at(expected)


# --- the window ------------------------------------------------------------------------------


def test_window_start_is_watermark_minus_lookback_else_fire_time_minus_lookback(
    env: Settings,
) -> None:
    engine = make_engine(env.database_url)
    fire = at("2026-03-02T02:00:00")
    assert nightly.window_start(engine, fire, LOOKBACK) == at("2026-02-27T02:00:00")
    with Session(engine) as session, session.begin():
        session.add(
            Run(
                id="r1",
                since=at("2026-02-20T00:00:00"),
                until=at("2026-03-01T02:00:00"),
                status="succeeded",
                started_at=at("2026-03-01T02:00:00"),
                watermark=at("2026-03-01T02:00:00"),
            )
        )
        session.add(
            Run(
                id="r2-failed",
                since=at("2026-02-27T02:00:00"),
                until=at("2026-03-02T02:00:00"),
                status="failed",
                started_at=at("2026-03-02T02:00:00"),
            )
        )
    assert nightly.window_start(engine, fire, LOOKBACK) == at("2026-02-26T02:00:00")
    engine.dispose()


def test_successive_scheduled_runs_chain_their_windows(env: Settings) -> None:
    PLAN.extend([ExitCode.OK, RunFailed("Stripe unavailable after retries"), ExitCode.DRIFT])
    codes = []
    for moment in ("2026-03-01T02:00:07", "2026-03-02T02:00:03", "2026-03-03T02:01:00"):
        with freeze_time(moment + "Z"):
            codes.append(nightly.scheduled_run(run=record_run))
    assert codes == [0, 3, 1]
    assert [(c.since, c.until, c.trigger) for c in CALLS] == [
        (at("2026-02-26T02:00:00"), at("2026-03-01T02:00:00"), "scheduler"),
        (None, at("2026-03-02T02:00:00"), "scheduler"),
        (None, at("2026-03-03T02:00:00"), "scheduler"),
    ]
    # the failed night leaves no watermark, so the next run re-reads from the last good one
    assert [(w.since, w.until) for w in WINDOWS] == [
        (at("2026-02-26T02:00:00"), at("2026-03-01T02:00:00")),
        (at("2026-02-26T02:00:00"), at("2026-03-02T02:00:00")),
        (at("2026-02-26T02:00:00"), at("2026-03-03T02:00:00")),
    ]


# --- coalescing and misfires after downtime ---------------------------------------------------


def _stored_jobs(settings: Settings) -> list[tuple[float | None, bytes]]:
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT next_run_time, job_state FROM apscheduler_jobs"))
        result = [(row[0], bytes(row[1])) for row in rows]
    engine.dispose()
    return result


def _persist_job(settings: Settings, moment: str) -> None:
    """Start and stop a scheduler at ``moment``, as the process did before going down."""
    with freeze_time(moment):
        scheduler = nightly.build_scheduler(
            settings, run=record_run, scheduler_class=BackgroundScheduler
        )
        scheduler.start(paused=True)
        scheduler.shutdown()


def _start_until_first_job_event(settings: Settings, moment: str) -> list[int]:
    """Start a blocking scheduler at ``moment``; run in this thread until a job runs or misfires."""
    events: list[int] = []
    with freeze_time(moment):
        scheduler = nightly.build_scheduler(
            settings,
            run=record_run,
            scheduler_class=BlockingScheduler,
            executors={"default": DebugExecutor()},
        )

        def stop(event: object) -> None:
            events.append(event.code)  # type: ignore[attr-defined]
            scheduler.shutdown(wait=False)

        def give_up() -> None:
            if scheduler.running:
                events.append(-1)
                scheduler.shutdown(wait=False)

        scheduler.add_listener(stop, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        safety = threading.Timer(3, give_up)  # no job event at all: fail instead of hanging
        safety.start()
        scheduler.start()
        safety.cancel()
    return events


def test_downtime_over_several_fire_times_runs_once_within_the_grace(env: Settings) -> None:
    _persist_job(env, "2026-03-01T12:00:00Z")
    assert _stored_jobs(env)[0][0] == at("2026-03-02T02:00:00").timestamp()
    # down from 03-01 until 03-05 02:30: four fire times missed, the last by 30 minutes
    events = _start_until_first_job_event(env, "2026-03-05T02:30:00Z")
    assert events == [EVENT_JOB_EXECUTED]
    assert [c.until for c in CALLS] == [at("2026-03-05T02:00:00")]
    assert _stored_jobs(env)[0][0] == at("2026-03-06T02:00:00").timestamp()


def test_downtime_beyond_the_grace_skips_the_missed_run(env: Settings) -> None:
    _persist_job(env, "2026-03-01T12:00:00Z")
    events = _start_until_first_job_event(env, "2026-03-05T03:30:00Z")
    assert events == [EVENT_JOB_MISSED]
    assert CALLS == []
    assert _stored_jobs(env)[0][0] == at("2026-03-06T02:00:00").timestamp()


def test_restart_before_the_fire_time_keeps_one_job(env: Settings) -> None:
    _persist_job(env, "2026-03-01T12:00:00Z")
    _persist_job(env, "2026-03-01T13:00:00Z")
    stored = _stored_jobs(env)
    assert len(stored) == 1
    assert stored[0][0] == at("2026-03-02T02:00:00").timestamp()


# --- clean shutdown -----------------------------------------------------------------------


def test_sigterm_waits_for_the_run_in_progress(env: Settings) -> None:
    scheduler = nightly.build_scheduler(env, run=slow_run, scheduler_class=BackgroundScheduler)
    stopper = nightly.Stopper(scheduler)
    scheduler.start()
    scheduler.modify_job(nightly.JOB_ID, next_run_time=datetime.now(UTC))
    assert RUN_STARTED.wait(5)
    stopper(signal.SIGTERM)  # the handler returns at once; its shutdown thread waits
    stopping = threading.Thread(target=stopper.join)
    stopping.start()
    stopping.join(0.1)
    assert stopping.is_alive()  # shutdown is waiting for the run
    assert not RUN_FINISHED.is_set()
    assert nightly.STOPPING.is_set()  # a run over connected accounts would read no further one
    RUN_RELEASE.set()
    stopping.join(5)
    assert not stopping.is_alive()
    assert RUN_FINISHED.is_set()
    assert not nightly.STOPPING.is_set()  # stopped: a scheduler started later starts afresh
    assert stopper.requested
    stopper(signal.SIGTERM)  # a second signal is harmless


def test_a_signal_while_starting_stops_the_scheduler_at_once(env: Settings) -> None:
    scheduler = nightly.build_scheduler(env, run=record_run, scheduler_class=BackgroundScheduler)
    stopper = nightly.Stopper(scheduler)
    scheduler.add_listener(stopper.on_started, EVENT_SCHEDULER_STARTED)
    stopper(signal.SIGINT)  # not started yet: only noted
    assert stopper.requested
    scheduler.start()
    assert not scheduler.running


def test_the_process_stops_cleanly_on_sigterm(env: Settings, tmp_path: Path) -> None:
    environ = {**os.environ, "RECONCILE_SCHEDULE": "0 2 1 1 *"}
    with subprocess.Popen(
        [sys.executable, "-m", "jobs.nightly"],
        cwd=tmp_path,
        env={**environ, "PYTHONPATH": str(Path(nightly.__file__).resolve().parents[1])},
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "scheduler started; next run at" in line:
                break
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        assert process.wait(timeout=10) == 0
    assert "SIGTERM: stopping the scheduler" in rest
    assert "scheduler stopped" in rest
    assert STRIPE_KEY not in "".join(lines) + rest


# --- --once and configuration ------------------------------------------------------------


def test_once_runs_now_and_exits_with_the_run_code(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    PLAN.append(ExitCode.DRIFT)
    with freeze_time("2026-03-05T10:11:12.5Z"):
        assert nightly.main(["--once"], run=record_run) == 1
    assert CALLS[0].until == at("2026-03-05T10:11:12")
    assert CALLS[0].trigger == "once"
    assert CALLS[0].since == at("2026-03-02T10:11:12")
    err = capsys.readouterr().err
    assert "run run-1 finished with exit 1 (drift)" in err
    assert env.metrics_file is not None
    assert "reconcile_last_exit_code 1" in env.metrics_file.read_text()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RunFailed("Moesif unavailable after 6 attempts"), 3),
        (LockHeld("another reconcile run holds the lock on sqlite:///x (since t, holder h:1)"), 75),
    ],
)
def test_once_turns_errors_into_their_exit_code_and_one_line(
    env: Settings, capsys: pytest.CaptureFixture[str], error: ReconcileError, code: int
) -> None:
    PLAN.append(error)
    assert nightly.main(["--once"], run=record_run) == code
    err_lines = capsys.readouterr().err.strip().splitlines()
    failures = [line for line in err_lines if "run failed" in line]
    assert len(failures) == 1
    assert f"once run failed (exit {code}): {error}" in failures[0]
    assert env.metrics_file is not None
    assert f"reconcile_last_exit_code {code}" in env.metrics_file.read_text()


@pytest.mark.parametrize(
    "error", [RunFailed(f"boom {STRIPE_KEY}"), ValueError(f"boom {STRIPE_KEY}")]
)
def test_failures_and_crashes_are_exit_3_without_leaking_secrets(
    env: Settings, capsys: pytest.CaptureFixture[str], error: Exception
) -> None:
    PLAN.append(error)
    assert nightly.main(["--once"], run=record_run) == 3
    err = capsys.readouterr().err
    assert STRIPE_KEY not in err
    assert "boom ***" in err
    assert env.metrics_file is not None
    assert "reconcile_last_exit_code 3" in env.metrics_file.read_text()


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("STRIPE_API_KEY", "", "STRIPE_API_KEY is required"),
        ("RECONCILE_SCHEDULE", "0 25 * * *", "RECONCILE_SCHEDULE"),
        ("RECONCILE_LOOKBACK", "soon", "RECONCILE_LOOKBACK"),
    ],
)
def test_configuration_errors_are_one_line_and_exit_2(
    env: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    fragment: str,
) -> None:
    monkeypatch.setenv(variable, value)
    for argv in (["--once"], []):
        assert nightly.main(argv, run=record_run) == 2
        err = capsys.readouterr().err
        assert err.startswith("reconcile: error: ")
        assert fragment in err
        assert err.count("\n") == 1
    assert CALLS == []


class _LockedScheduler:
    """A scheduler whose shutdown needs a lock the signalled thread already holds.

    The signal lands while the main thread is inside APScheduler's ``Event.set``, holding its
    non-reentrant condition lock: a handler that shut down right there waited for ever.
    """

    def __init__(self) -> None:
        self.state = 1  # running
        self.lock = threading.Lock()
        self.stopped_by: list[str] = []

    def shutdown(self, wait: bool = True) -> None:
        with self.lock:
            self.stopped_by.append(threading.current_thread().name)
            self.state = 0


def test_a_signal_landing_inside_the_schedulers_lock_does_not_deadlock() -> None:
    scheduler = _LockedScheduler()
    stopper = nightly.Stopper(scheduler)  # type: ignore[arg-type]
    with scheduler.lock:  # as the main thread is, inside Event.set
        stopper(signal.SIGTERM)  # returns: the shutdown waits for the lock in its own thread
        assert scheduler.stopped_by == []
    stopper.join()
    assert scheduler.stopped_by == ["reconcile-stop"]
    stopper(signal.SIGTERM)  # a second signal is only noted
    assert scheduler.stopped_by == ["reconcile-stop"]
