"""The run lock: one reconcile run per snapshot database, across processes and machines.

PostgreSQL holds a session advisory lock on a dedicated connection; SQLite holds an OS
``flock`` on a sidecar file ``<database>.lock``; in-memory SQLite holds a process-local lock.
In every case the lock dies with its holder: a crashed run never blocks the next one.

Its SQL stays here, not in ``db/``: it is PostgreSQL's lock functions and catalog on a
connection of its own, held for the whole run outside every session and transaction, and it
touches no table of the snapshot.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from reconcile.db.engine import describe
from reconcile.domain.times import to_iso
from reconcile.errors import DatabaseUnavailable, LockHeld

logger = logging.getLogger(__name__)

_APPLICATION_NAME_LIMIT = 63
"""PostgreSQL truncates ``application_name`` to NAMEDATALEN - 1 bytes."""

_HOLDER_QUERY = text(
    """
    SELECT a.application_name, a.backend_start
    FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::bigint = :high AND l.objid::bigint = :low
    """
)

_local_guard = threading.Lock()
_local_holders: dict[str, Holder] = {}


@dataclass(frozen=True)
class Holder:
    """Who holds a lock and since when, as far as it can be told."""

    since: str
    who: str

    @classmethod
    def me(cls) -> Holder:
        """Return this process as a holder, from now."""
        return cls(since=to_iso(datetime.now(UTC)), who=f"{socket.gethostname()}:{os.getpid()}")

    @classmethod
    def parse(cls, line: str) -> Holder:
        """Read ``<since> <host:pid>`` back; anything else is an unknown holder."""
        parts = line.strip().split(" ", 1)
        if len(parts) != 2:
            return cls(since="unknown", who="unknown")
        return cls(since=parts[0], who=parts[1])

    def line(self) -> str:
        """Return the holder as one ``<since> <host:pid>`` line."""
        return f"{self.since} {self.who}"


@contextmanager
def run_lock(engine: Engine, name: str = "reconcile") -> Iterator[None]:
    """Hold the run lock named ``name`` on ``engine``'s database for the ``with`` block.

    Args:
        engine: the snapshot database; the lock covers every process using the same database.
        name: which lock; runs of the job all use the default.

    Raises:
        LockHeld: another process (or another holder in this one) has the lock.
        DatabaseUnavailable: the database or the lock file could not be reached.
    """
    database = engine.url.render_as_string(hide_password=True)
    if engine.dialect.name == "postgresql":
        with _postgres_lock(engine, name, database):
            yield
    elif _sqlite_in_memory(engine):
        with _process_lock(name, database):
            yield
    else:
        with _file_lock(_sidecar(engine, name), database):
            yield


def _held(database: str, holder: Holder) -> LockHeld:
    return LockHeld(
        f"another reconcile run holds the lock on {database} "
        f"(since {holder.since}, holder {holder.who})"
    )


def advisory_key(name: str) -> int:
    """Return the signed 64-bit PostgreSQL advisory-lock key of a lock name."""
    digest = hashlib.sha256(f"reconcile:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _postgres_lock(engine: Engine, name: str, database: str) -> Iterator[None]:
    key = advisory_key(name)
    connection = _connect(engine)
    try:
        if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
            raise _held(database, _postgres_holder(connection, key))
        label = _application_name(Holder.me())
        connection.execute(text("SELECT set_config('application_name', :v, false)"), {"v": label})
    except (SQLAlchemyError, LockHeld) as error:
        # Never hand a connection that may hold the lock back to the pool: close it for good.
        connection.invalidate()
        connection.close()
        if isinstance(error, LockHeld):
            raise
        raise DatabaseUnavailable(f"could not take the run lock: {describe(error)}") from None
    logger.debug("took the run lock %r on %s", name, database)
    try:
        yield
    finally:
        _release_postgres(connection, key)


def _connect(engine: Engine) -> Connection:
    try:
        return engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(
            f"could not reach the database to take the run lock: {describe(error)}"
        ) from None


def _release_postgres(connection: Connection, key: int) -> None:
    """Unlock, then close the dedicated connection for good (it carries our application_name)."""
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except SQLAlchemyError as error:
        logger.warning("could not unlock the run lock; closing its connection: %s", describe(error))
    finally:
        connection.invalidate()
        connection.close()


def _application_name(holder: Holder) -> str:
    label = f"reconcile {holder.line()}"
    return label.encode()[:_APPLICATION_NAME_LIMIT].decode(errors="ignore")


def _postgres_holder(connection: Connection, key: int) -> Holder:
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    params = {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}
    row = connection.execute(_HOLDER_QUERY, params).first()
    if row is None:
        return Holder(since="unknown", who="unknown")
    application_name, backend_start = row
    if isinstance(application_name, str) and application_name.startswith("reconcile "):
        return Holder.parse(application_name.removeprefix("reconcile "))
    since = to_iso(backend_start) if isinstance(backend_start, datetime) else "unknown"
    return Holder(since=since, who=f"a session named {application_name or 'unknown'!r}")


def _sqlite_in_memory(engine: Engine) -> bool:
    database = engine.url.database or ""
    memory_uri = database.startswith("file:") and "mode=memory" in str(engine.url)
    return database in ("", ":memory:") or memory_uri


def _sidecar(engine: Engine, name: str) -> Path:
    """Return ``<database>.lock`` for the run lock, ``<database>.<name>.lock`` for others."""
    database = engine.url.database or ""
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    suffix = ".lock" if name == "reconcile" else f".{name}.lock"
    return Path(f"{database}{suffix}")


@contextmanager
def _file_lock(path: Path, database: str) -> Iterator[None]:
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise DatabaseUnavailable(f"cannot open the lock file {path}: {error.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = Holder.parse(os.pread(descriptor, 512, 0).decode(errors="replace"))
        os.close(descriptor)
        raise _held(database, holder) from None
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{Holder.me().line()}\n".encode(), 0)
        logger.debug("took the run lock file %s", path)
        yield
    finally:
        # Never unlink the file: another process may already have it open.
        with suppress(OSError):
            os.ftruncate(descriptor, 0)
        with suppress(OSError):
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


@contextmanager
def _process_lock(name: str, database: str) -> Iterator[None]:
    with _local_guard:
        holder = _local_holders.get(name)
        if holder is not None:
            raise _held(database, holder)
        _local_holders[name] = Holder.me()
    try:
        yield
    finally:
        with _local_guard:
            del _local_holders[name]
