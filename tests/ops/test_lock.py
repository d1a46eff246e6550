from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from reconcile.db.engine import make_engine
from reconcile.errors import ExitCode, LockHeld
from reconcile.lock import run_lock

CONTENDER = """
import sys
from reconcile.db.engine import make_engine
from reconcile.errors import LockHeld
from reconcile.lock import run_lock

engine = make_engine(sys.argv[1])
sys.stdin.readline()
try:
    with run_lock(engine):
        print("acquired", flush=True)
        sys.stdin.read()
except LockHeld as error:
    print("held:", error, flush=True)
"""


def _with_password(url: str) -> str:
    if not url.startswith("postgresql"):
        return url
    # trust auth ignores the password, so it is only there to be masked
    return make_url(url).set(password="pw_secret").render_as_string(hide_password=False)


@pytest.fixture
def spawn() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start contender processes; kill leftovers and close their pipes afterwards."""
    started: list[subprocess.Popen[str]] = []

    def contender(url: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", CONTENDER, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield contender
    for process in started:
        if process.poll() is None:
            process.kill()
        with process:  # closes the pipes and reaps the process
            pass


def _go(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def _outcome(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


def _finish(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=10) == 0


def _take_within(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    engine = make_engine(url)
    while True:
        try:
            with run_lock(engine):
                return
        except LockHeld:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            engine.dispose()


def test_second_holder_is_refused_with_one_line_naming_database_time_and_holder(
    database_url: str,
) -> None:
    url = _with_password(database_url)
    first, second = make_engine(url), make_engine(url)
    with run_lock(first), pytest.raises(LockHeld) as caught, run_lock(second):
        pass
    message = str(caught.value)
    assert message.startswith("another reconcile run holds the lock on ")
    assert f"holder {socket.gethostname()}:{os.getpid()}" in message
    assert "(since 20" in message
    assert "\n" not in message
    assert "pw_secret" not in message
    assert caught.value.exit_code == ExitCode.LOCKED
    with run_lock(second):  # released on exit
        pass
    first.dispose()
    second.dispose()


def test_lock_names_are_independent(database_url: str) -> None:
    engine = make_engine(database_url)
    with run_lock(engine, "reconcile"), run_lock(engine, "other"):
        with pytest.raises(LockHeld):
            with run_lock(engine, "other"):
                pass
    engine.dispose()


def test_lock_is_released_when_the_block_raises(database_url: str) -> None:
    engine = make_engine(database_url)
    with pytest.raises(RuntimeError), run_lock(engine):
        raise RuntimeError("the run failed")
    with run_lock(engine):
        pass
    engine.dispose()


def test_sqlite_lock_is_a_sidecar_file_with_the_holder(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    sidecar = tmp_path / "snapshot.db.lock"
    with run_lock(engine):
        assert sidecar.read_text().strip().endswith(f"{socket.gethostname()}:{os.getpid()}")
    assert sidecar.exists()
    assert sidecar.read_text() == ""


def test_in_memory_sqlite_uses_a_process_lock() -> None:
    engine = make_engine("sqlite://")
    with run_lock(engine), pytest.raises(LockHeld, match="sqlite://"), run_lock(engine):
        pass
    with run_lock(engine):
        pass


def test_two_processes_starting_at_once_exactly_one_gets_the_lock(
    database_url: str, spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    contenders = [spawn(database_url), spawn(database_url)]
    for process in contenders:
        _go(process)
    outcomes = sorted(_outcome(process) for process in contenders)
    for process in contenders:
        _finish(process)
    assert outcomes[0] == "acquired"
    assert outcomes[1].startswith("held: another reconcile run holds the lock")


def test_a_killed_holder_does_not_block_the_next_run(
    database_url: str, spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    holder = spawn(database_url)
    _go(holder)
    assert _outcome(holder) == "acquired"
    with pytest.raises(LockHeld):
        _take_within(database_url, 0)
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=10) == -signal.SIGKILL
    _take_within(database_url, 5)
