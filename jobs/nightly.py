"""The nightly scheduler: runs reconcile on ``RECONCILE_SCHEDULE`` (UTC), one run at a time.

``python -m jobs.nightly`` keeps an APScheduler ``BlockingScheduler`` running with its job in the
snapshot database (table ``apscheduler_jobs``); ``python -m jobs.nightly --once`` fires one run
now and exits with its code. Each run covers ``[watermark - lookback, fire time)``; the first,
with no watermark yet, ``[fire time - lookback, fire time)``.

With ``STRIPE_ACCOUNTS`` a run is what ``reconcile`` makes of it (section 12): one run per
connected account, each from its own watermark under its own lock (in turn on SQLite, through
``reconcile worker`` processes on PostgreSQL), exit code the most serious of theirs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_SCHEDULER_STARTED, SchedulerEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from reconcile.accounts.command import run_accounts
from reconcile.after_run import after_run
from reconcile.clients import open_clients
from reconcile.config import Settings
from reconcile.db import runs
from reconcile.db.engine import describe, make_engine
from reconcile.errors import ConfigError, DatabaseUnavailable, ExitCode, ReconcileError
from reconcile.observability import configure_logging
from reconcile.rules.accounts import named
from reconcile.run import RunOutcome, RunRequest, execute

logger = logging.getLogger("jobs.nightly")

JOB_ID = "reconcile-nightly"
"""The stable id of the job in the job store; a restart replaces it rather than adding one."""

JOB_FUNC = "jobs.nightly:scheduled_run"
"""The job by reference, so the store holds a name, never code or settings (no secrets)."""

MISFIRE_GRACE_SECONDS = 3600
"""A fire time missed by up to an hour (scheduler down, host asleep) still runs once when the
scheduler is back; a later one is skipped, and the next run's lookback re-reads what it missed."""

RunFunction = Callable[[Settings, RunRequest], RunOutcome]
"""A run's shape: ``(settings, request) -> RunOutcome``; :func:`live_run` unless a test injects."""


def live_run(settings: Settings, request: RunRequest) -> RunOutcome:
    """Run one pass with the clients the settings name (real time, real waits)."""
    with open_clients(settings) as clients:
        return execute(settings, request, clients)


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(schedule: str) -> CronTrigger:
    """Return the UTC trigger of a five-field crontab line, with cron's weekdays (0 = Sunday).

    Raises:
        ConfigError: the expression is not a valid crontab line.
    """
    fields = schedule.split()
    try:
        if len(fields) == 5:
            fields[4] = _cron_weekdays(fields[4])
        return CronTrigger.from_crontab(" ".join(fields), timezone=UTC)
    except ValueError as error:
        raise ConfigError(f"RECONCILE_SCHEDULE {schedule!r} is not a cron line: {error}") from None


def _cron_weekdays(field: str) -> str:
    """Translate a crontab day-of-week field to names: APScheduler 3 counts 0 as Monday."""
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.lower().split(","):
        span, _, step = item.partition("/")
        first, last = _weekday_span(span)
        days.update(day % 7 for day in range(first, last + 1, int(step or 1)))
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _weekday_span(span: str) -> tuple[int, int]:
    if span == "*":
        return 0, 6
    low, _, high = span.partition("-")
    first = _weekday(low)
    return first, _weekday(high) if high else first


def _weekday(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token[:3] in _WEEKDAYS:
        return _WEEKDAYS.index(token[:3])
    raise ValueError(f"{token!r} is not a day of the week (0-7 or sun-sat)")


def previous_fire_time(trigger: CronTrigger, now: datetime) -> datetime:
    """Return the trigger's latest fire time at or before ``now``: the fire a job run serves."""
    for span in (timedelta(hours=2), timedelta(days=2), timedelta(days=32), timedelta(days=367)):
        fire = trigger.get_next_fire_time(None, now - span)
        if fire is not None and fire <= now:
            return _last_fire_until(trigger, fire, now)
    raise ConfigError("RECONCILE_SCHEDULE has not fired in the past year")


def _last_fire_until(trigger: CronTrigger, fire: datetime, now: datetime) -> datetime:
    latest: datetime = fire
    while True:
        following = trigger.get_next_fire_time(latest, latest + timedelta(seconds=1))
        if following is None or following > now:
            return latest.astimezone(UTC)
        latest = following


def latest_watermark(engine: Engine) -> datetime | None:
    """Return where the last successful full run ended, or ``None`` before the first."""
    try:
        if not inspect(engine).has_table("runs"):
            return None
        with Session(engine) as session:
            return runs.last_watermark(session)
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(f"could not read the watermark: {describe(error)}") from None


def window_start(engine: Engine, fire_time: datetime, lookback: timedelta) -> datetime:
    """Return where a run firing at ``fire_time`` starts: watermark (else fire time) - lookback."""
    watermark = latest_watermark(engine)
    return (watermark if watermark is not None else fire_time) - lookback


def scheduled_request(
    engine: Engine, until: datetime, lookback: timedelta, trigger: str
) -> RunRequest:
    """Return the request of an unattended run ending at ``until``.

    With a watermark, ``since`` stays ``None`` so the run module applies watermark - lookback
    under its lock; the very first run starts at ``until - lookback``.
    """
    since = None if latest_watermark(engine) is not None else until - lookback
    return RunRequest(since=since, until=until, trigger=trigger)


STOPPING = threading.Event()
"""Set while a signal's shutdown waits for the run in hand: a run over connected accounts reads
no further account, and on PostgreSQL stops waiting for the workers (see :class:`Stopper`)."""


def fire(
    settings: Settings,
    until: datetime,
    *,
    trigger: str = "scheduler",
    run: RunFunction = live_run,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    stopping: Callable[[], bool] = STOPPING.is_set,
) -> int:
    """Run reconcile once for the window ending at ``until``; log, write metrics, return the code.

    With ``STRIPE_ACCOUNTS`` it is one run per connected account (:func:`fire_accounts`).

    Args:
        settings: validated settings.
        until: the window's end (the fire time, or now for ``--once``).
        trigger: recorded in ``runs.trigger``.
        run: the run function; :func:`live_run` unless a test injects another (the key's own
            account only: the accounts' runs are those of ``reconcile``).
        clock: the current time, for the metrics of a run that failed.
        stopping: asked between connected accounts; once true, the run reads no further one.
    """
    if settings.stripe_accounts:
        return fire_accounts(settings, until, trigger=trigger, clock=clock, stopping=stopping)
    started_at = clock()
    try:
        request = _request(settings, until, trigger)
        outcome = run(settings, request)
    except ReconcileError as error:
        message = settings.redactor().message(error)
        logger.error("%s run failed (exit %d): %s", trigger, error.exit_code, message)
        return after_run(settings, error, logger, clock, began=started_at)
    except Exception as error:
        logger.exception("%s run crashed", trigger)
        crashed = ReconcileError(f"internal error: {type(error).__name__}: {error}")
        return after_run(settings, crashed, logger, clock, began=started_at)
    return after_run(settings, outcome, logger, clock, began=started_at)


def accounts_request(until: datetime, lookback: timedelta, trigger: str) -> RunRequest:
    """Return the request of an unattended run over connected accounts, ending at ``until``.

    ``since`` stays ``None``: each account's run starts at its own watermark minus the lookback,
    chosen under its own lock; an account with no watermark yet starts at ``until - lookback``.
    """
    return RunRequest(since=None, until=until, trigger=trigger, first_since=until - lookback)


def fire_accounts(
    settings: Settings,
    until: datetime,
    *,
    trigger: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    stopping: Callable[[], bool] = STOPPING.is_set,
) -> int:
    """Run each connected account ``STRIPE_ACCOUNTS`` names, as ``reconcile`` does; return the code.

    Each account's run writes its own metrics and notification (in this process on SQLite, in
    the worker on PostgreSQL), as a cron run of ``reconcile`` with ``STRIPE_ACCOUNTS`` does.
    """
    started_at = clock()
    request = accounts_request(until, settings.lookback, trigger)
    logger.info(
        "%s run of the connected accounts (%s) for the window ending %s, "
        "each from its own watermark minus the lookback",
        trigger,
        named(settings.stripe_accounts),
        until.isoformat(),
    )

    def failed(error: ReconcileError, settings: Settings) -> int:
        message = settings.redactor().message(error)
        logger.error("%s run failed (exit %d): %s", trigger, error.exit_code, message)
        return int(error.exit_code)

    try:
        code = run_accounts(
            settings,
            request,
            settings.stripe_accounts,
            emit=logger.info,
            fail=failed,
            stopping=stopping,
        )
    except Exception as error:
        logger.exception("%s run crashed", trigger)
        crashed = ReconcileError(f"internal error: {type(error).__name__}: {error}")
        return after_run(settings, crashed, logger, clock, began=started_at)
    logger.info("%s run of the connected accounts ended with exit %d", trigger, code)
    return code


def _request(settings: Settings, until: datetime, trigger: str) -> RunRequest:
    engine = make_engine(settings.database_url)
    try:
        request = scheduled_request(engine, until, settings.lookback, trigger)
    finally:
        engine.dispose()
    start = "the watermark minus the lookback" if request.since is None else request.since
    logger.info("%s run for the window ending %s, from %s", trigger, until.isoformat(), start)
    return request


def scheduled_run(schedule: str | None = None, run: RunFunction = live_run) -> int:
    """Run the job for its latest fire time; APScheduler calls this by reference.

    Settings are read again at each run, so credentials never enter the job store.

    Args:
        schedule: the cron line of the trigger that fired (the job stores it); by default
            ``RECONCILE_SCHEDULE``.
        run: the run function; :func:`live_run` unless a test injects another.
    """
    try:
        settings = Settings.from_env()
        trigger = cron_trigger(schedule or settings.schedule)
        fire_time = previous_fire_time(trigger, datetime.now(UTC))
    except ConfigError as error:
        logger.error("scheduled run not started: %s", error)
        return int(error.exit_code)
    return fire(settings, fire_time, trigger="scheduler", run=run)


def build_scheduler(
    settings: Settings,
    *,
    run: RunFunction = live_run,
    scheduler_class: type[BaseScheduler] = BlockingScheduler,
    executors: Mapping[str, Any] | None = None,
    misfire_grace_time: int = MISFIRE_GRACE_SECONDS,
) -> BaseScheduler:
    """Return a scheduler (not started) with the reconcile job in the snapshot database.

    A fire time missed while the scheduler was down is kept from the job store, so on start the
    job runs once (coalesced) if within the grace period; otherwise it is skipped as a misfire.

    Args:
        settings: validated settings; the schedule and database URL are read here.
        run: the run function the job calls; it must be importable by reference.
        scheduler_class: ``BlockingScheduler`` in production; tests pick another.
        executors: APScheduler executors; one worker thread by default.
        misfire_grace_time: seconds a late fire time still runs.
    """
    trigger = cron_trigger(settings.schedule)
    store = SQLAlchemyJobStore(url=settings.database_url)
    scheduler = scheduler_class(
        timezone=UTC,
        jobstores={"default": store},
        executors=dict(executors or {"default": ThreadPoolExecutor(max_workers=1)}),
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": misfire_grace_time,
        },
    )
    options: dict[str, Any] = {}
    missed = _missed_fire_time(store, datetime.now(UTC))
    if missed is not None:
        options["next_run_time"] = missed
    scheduler.add_job(
        JOB_FUNC,
        trigger,
        id=JOB_ID,
        name="reconcile nightly",
        kwargs=_job_arguments(settings.schedule, run),
        replace_existing=True,
        **options,
    )
    return scheduler


def _job_arguments(schedule: str, run: RunFunction) -> dict[str, Any]:
    """Return the job's stored arguments: plain values and references, never settings."""
    arguments: dict[str, Any] = {"schedule": schedule}
    if run is not live_run:
        arguments["run"] = run
    return arguments


def _missed_fire_time(store: SQLAlchemyJobStore, now: datetime) -> datetime | None:
    """Return the stored job's next run time if it already passed (the scheduler was down)."""
    table = store.jobs_t
    try:
        with store.engine.connect() as connection:
            if not inspect(connection).has_table(table.name):
                return None
            stamp = connection.execute(
                select(table.c.next_run_time).where(table.c.id == JOB_ID)
            ).scalar()
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(f"could not read the job store: {describe(error)}") from None
    if stamp is None:
        return None
    stored = datetime.fromtimestamp(float(stamp), tz=UTC)
    return stored if stored <= now else None


class Stopper:
    """The SIGTERM/SIGINT handler: shut the scheduler down after the run in progress finishes.

    A run over connected accounts finishes the account in hand and reads no further one
    (:data:`STOPPING`); the accounts left are read by the next run, each from its watermark.
    """

    def __init__(self, scheduler: BaseScheduler) -> None:
        """Watch ``scheduler``; nothing is requested yet."""
        self.scheduler = scheduler
        self.requested = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def __call__(self, signum: int, _frame: FrameType | None = None) -> None:
        """Stop the scheduler, waiting for a run in progress; later signals are ignored.

        The signal may land while the main thread holds the scheduler's own (non-reentrant)
        lock, inside ``Event.set``; shutting down right here would wait for that lock forever.
        So the handler only notes the request and a thread of its own does the shutdown.
        """
        self.requested = True
        if self._stopping or self.scheduler.state == STATE_STOPPED:
            return
        self._stopping = True
        STOPPING.set()
        name = signal.Signals(signum).name
        self._thread = threading.Thread(target=self._shut_down, args=(name,), name="reconcile-stop")
        self._thread.start()

    def join(self) -> None:
        """Wait until a shutdown a signal asked for has finished (the run in progress too)."""
        if self._thread is not None:
            self._thread.join()

    def _shut_down(self, name: str) -> None:
        logger.info(
            "%s: stopping the scheduler once the run in progress, if any, has finished "
            "(over connected accounts: once the account in hand has)",
            name,
        )
        self.scheduler.shutdown(wait=True)
        STOPPING.clear()  # nothing runs any more; a scheduler started later starts afresh

    def on_started(self, _event: SchedulerEvent) -> None:
        """Log the next run, or stop at once if a signal came while the scheduler was starting."""
        if self.requested:
            self._stopping = True
            self.scheduler.shutdown(wait=False)
            return
        job = self.scheduler.get_job(JOB_ID)
        logger.info("scheduler started; next run at %s", job.next_run_time if job else "never")


def install_signal_handlers(scheduler: BaseScheduler) -> Stopper:
    """Make SIGTERM and SIGINT stop ``scheduler`` cleanly; return the handler."""
    stopper = Stopper(scheduler)
    scheduler.add_listener(stopper.on_started, EVENT_SCHEDULER_STARTED)
    signal.signal(signal.SIGTERM, stopper)
    signal.signal(signal.SIGINT, stopper)
    return stopper


def serve(settings: Settings, *, run: RunFunction = live_run) -> int:
    """Run the scheduler in the foreground until SIGTERM or SIGINT; return 0 on a clean stop."""
    scheduler = build_scheduler(settings, run=run)
    stopper = install_signal_handlers(scheduler)
    logger.info(
        "scheduling reconcile at %r (UTC) in %s%s",
        settings.schedule,
        settings.safe_database_url,
        _accounts_mode(settings),
    )
    if not stopper.requested:
        try:
            scheduler.start()
        except SQLAlchemyError as error:
            raise DatabaseUnavailable(f"could not start the job store: {describe(error)}") from None
    stopper.join()
    logger.info("scheduler stopped")
    return int(ExitCode.OK)


def _accounts_mode(settings: Settings) -> str:
    """Return how a run reads the connected accounts, for the scheduler's first log line."""
    if not settings.stripe_accounts:
        return ""
    accounts = named(settings.stripe_accounts)
    if settings.database_url.startswith("postgresql"):
        return f"; connected accounts ({accounts}) go to `reconcile worker` processes"
    return f"; connected accounts ({accounts}) are read in turn"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.nightly",
        description="Run reconcile on RECONCILE_SCHEDULE (cron, UTC) until stopped.",
        epilog="Exit codes of --once: 0 ok, 1 drift flagged, 2 usage or configuration, "
        "3 run failed, 4 guardrail, 75 another run holds the lock; with STRIPE_ACCOUNTS the most "
        "serious of the accounts'.",
    )
    parser.add_argument("--once", action="store_true", help="fire one run now and exit")
    return parser


def main(argv: Sequence[str] | None = None, *, run: RunFunction = live_run) -> int:
    """Start the scheduler, or with ``--once`` fire one run; return the process exit code."""
    namespace = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        cron_trigger(settings.schedule)
    except ReconcileError as error:
        sys.stderr.write(f"reconcile: error: {' '.join(str(error).split())}\n")
        return int(error.exit_code)
    configure_logging(logging.INFO, settings.log_format, settings.secret_values())
    if namespace.once:
        now = datetime.now(UTC).replace(microsecond=0)
        return fire(settings, now, trigger="once", run=run)
    try:
        return serve(settings, run=run)
    except ReconcileError as error:
        logger.error("scheduler not started: %s", " ".join(str(error).split()))
        return int(error.exit_code)


if __name__ == "__main__":
    sys.exit(main())
