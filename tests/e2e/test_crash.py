"""Exactly-once under crashes: kill the job process at each step of a posting, then rerun.

The job runs as a real subprocess; the fake Moesif kills it with SIGKILL at the moment a chosen
request arrives (before or after applying it), so no line of the job gets to tidy up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from reconcile.db.engine import make_engine
from reconcile.db.models import Posting, Run
from reconcile.demo import seed
from reconcile.fakes.moesif import Exchange, Verdict
from tests.e2e.conftest import World

POST_PATH = "/v1/~/billing/reports/balance_transactions"
MISSING = 4
"""How many movements the seeded history lacks in Moesif."""


def _job(world: World) -> subprocess.Popen[bytes]:
    # The whole environment (PYTHONPATH included, so the job runs the code under test); the
    # autouse fixture has already scrubbed the operator's STRIPE_/MOESIF_/RECONCILE_ settings.
    environment = {**os.environ, **world.environment}
    return subprocess.Popen(
        [sys.executable, "-m", "reconcile", "--since", world.since],
        env=environment,
        cwd=Path.cwd(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(
    world: World, wanted: Callable[[Exchange], bool], verdict: Verdict, nth: int = 1
) -> int:
    """Run the job, kill it when the ``nth`` wanted request arrives; return its exit status."""
    seen = 0
    job: list[subprocess.Popen[bytes]] = []

    def hook(exchange: Exchange) -> Verdict | None:
        nonlocal seen
        if not wanted(exchange):
            return None
        seen += 1
        if seen != nth:
            return None
        os.kill(job[0].pid, signal.SIGKILL)
        world.moesif.on_request = None
        return verdict

    world.moesif.on_request = hook
    job.append(_job(world))
    _, err = job[0].communicate(timeout=60)
    world.moesif.on_request = None
    assert job[0].returncode == -signal.SIGKILL, err.decode()
    return job[0].returncode


def _trust_reads_at_once(world: World) -> None:
    """Set the report lag to 0 for a test whose point is a crash, not Moesif's reports lagging.

    With the default lag a rerun seconds after a crash rightly sends nothing that may have been
    applied (``test_a_rerun_within_the_report_lag_never_resends_what_the_reports_lack``).
    """
    world.environment["RECONCILE_MOESIF_REPORT_LAG"] = "0"


def _rerun(world: World) -> int:
    """Run the job to the end; a just-killed holder's lock may take a moment to vanish."""
    for _ in range(20):
        job = _job(world)
        _, err = job.communicate(timeout=60)
        if job.returncode != 75:
            assert b"Traceback" not in err, err.decode()
            return job.returncode
        time.sleep(0.1)
    raise AssertionError("the lock of the killed run was never released")


def _is_post(exchange: Exchange) -> bool:
    return exchange.method == "POST" and exchange.path == POST_PATH


def _is_read_back(exchange: Exchange) -> bool:
    return exchange.method == "GET" and "company_id" in exchange.query


def _assert_each_posted_once(world: World) -> None:
    """Moesif applied every missing movement exactly once, and the job knows each is confirmed."""
    applied = world.moesif.applied_counts()
    assert all(count == 1 for count in applied.values()), applied
    ids = Counter(row.transaction_id for row in world.moesif.rows() if row.transaction_id)
    assert all(count == 1 for count in ids.values()), ids
    stored = _postings(world)
    assert len(stored) == MISSING
    assert {status for _, status in stored} == {"confirmed"}
    assert {tid for tid, _ in stored} == set(applied)


def _postings(world: World) -> list[tuple[str, str]]:
    engine = make_engine(world.database_url)
    try:
        with engine.connect() as connection:
            return [
                (row.transaction_id, row.status)
                for row in connection.execute(select(Posting.transaction_id, Posting.status))
            ]
    finally:
        engine.dispose()


@pytest.fixture
def seeded(world: World) -> World:
    seed(world.stripe, world.moesif, world.now)
    return world


def test_crash_before_moesif_applies_the_post_then_rerun_posts_it_once(seeded: World) -> None:
    _trust_reads_at_once(seeded)
    _kill_when(seeded, _is_post, "drop")
    assert [status for _, status in _postings(seeded)] == ["intent"]
    assert seeded.moesif.posts == []

    assert _rerun(seeded) == 1

    _assert_each_posted_once(seeded)
    assert len(seeded.moesif.posts) == MISSING


def test_crash_after_moesif_applied_the_post_then_rerun_never_resends_it(seeded: World) -> None:
    _kill_when(seeded, _is_post, "apply_then_drop")
    first = seeded.moesif.posts[0]["transaction_id"]
    assert [status for _, status in _postings(seeded)] == ["intent"]

    assert _rerun(seeded) == 1

    _assert_each_posted_once(seeded)
    sent = seeded.moesif.applied_counts()
    assert sent[first] == 1
    assert len(sent) == MISSING


def test_a_rerun_within_the_report_lag_never_resends_what_the_reports_lack(
    seeded: World,
) -> None:
    """Moesif applied the POST, the job died, and Moesif's reports do not list the row yet."""
    _kill_when(seeded, _is_post, "apply_then_drop")
    first = str(seeded.moesif.posts[0]["transaction_id"])
    seeded.moesif.unlisted.add(first)

    job = _job(seeded)
    _, err = job.communicate(timeout=60)

    assert job.returncode == 3, err.decode()
    assert f"got no answer from Moesif: {first};" in err.decode()
    assert seeded.moesif.applied_counts()[first] == 1
    assert (first, "intent") in _postings(seeded)

    seeded.moesif.unlisted.clear()
    assert _rerun(seeded) == 1
    _assert_each_posted_once(seeded)


def test_crash_during_the_read_back_then_rerun_posts_once(seeded: World) -> None:
    _trust_reads_at_once(seeded)
    _kill_when(seeded, _is_post, "drop")
    seeded.moesif.add_row(
        "noise", "sub_noise", "promotion", __import__("decimal").Decimal(1), seeded.now
    )
    _kill_when(seeded, _is_read_back, "drop")
    assert [status for _, status in _postings(seeded)] == ["intent"]

    assert _rerun(seeded) == 1

    _assert_each_posted_once(seeded)


def test_crash_after_the_outcome_is_recorded_then_rerun_sends_only_the_rest(
    seeded: World,
) -> None:
    _trust_reads_at_once(seeded)
    _kill_when(seeded, _is_post, "drop", nth=2)
    statuses = sorted(status for _, status in _postings(seeded))
    assert statuses == ["confirmed", "intent"]

    assert _rerun(seeded) == 1

    _assert_each_posted_once(seeded)
    assert len(seeded.moesif.posts) == MISSING


def test_a_crashed_run_is_marked_and_does_not_block_the_next(seeded: World) -> None:
    _trust_reads_at_once(seeded)
    _kill_when(seeded, _is_post, "drop")

    assert _rerun(seeded) == 1

    engine = make_engine(seeded.database_url)
    try:
        with engine.connect() as connection:
            statuses = [
                row.status
                for row in connection.execute(select(Run.status).order_by(Run.started_at))
            ]
    finally:
        engine.dispose()
    assert statuses == ["crashed", "succeeded"]
    _assert_each_posted_once(seeded)


def test_ctrl_c_mid_run_is_one_line_exit_3_and_the_rerun_completes(seeded: World) -> None:
    job: list[subprocess.Popen[bytes]] = []

    def interrupt(exchange: Exchange) -> Verdict | None:
        if _is_post(exchange) and seeded.moesif.on_request is not None:
            seeded.moesif.on_request = None
            os.kill(job[0].pid, signal.SIGINT)
        return None

    seeded.moesif.on_request = interrupt
    job.append(_job(seeded))
    _, err = job[0].communicate(timeout=60)

    assert job[0].returncode == 3
    text = err.decode()
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("reconcile: error: interrupted")
    assert _rerun(seeded) == 1
    _assert_each_posted_once(seeded)
