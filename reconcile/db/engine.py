"""Engines for the snapshot database, and migrating it to the newest schema."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from reconcile.errors import ConfigError, DatabaseUnavailable


def make_engine(url: str) -> Engine:
    """Return an engine for ``url``; SQLite gets foreign keys on and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def migrations_directory() -> Path:
    """Return the folder of the installed migration scripts (``env.py`` and ``versions/``)."""
    location = Path(str(files("reconcile") / "_migrations"))
    if not (location / "env.py").is_file():
        raise ConfigError(f"the migration scripts are missing from the installation ({location})")
    return location


def alembic_config(url: str | None = None) -> Config:
    """Return the Alembic configuration of this project, optionally for another database URL.

    It needs no ``alembic.ini``: the scripts are found in the installed package, so an install
    from a wheel migrates as well as a source checkout does.
    """
    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def known_revisions() -> tuple[str | None, frozenset[str]]:
    """Return the newest revision of the installed migrations, and every revision they know."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return scripts.get_current_head(), frozenset(s.revision for s in scripts.walk_revisions())


def database_revision(engine: Engine) -> str | None:
    """Return the revision ``engine``'s database is at, or ``None`` if it has no schema; only reads.

    Raises:
        DatabaseUnavailable: the database could not be read.
    """
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(
            f"could not read the snapshot database: {describe(error)}"
        ) from None


def upgrade_to_head(engine: Engine) -> None:
    """Apply every migration the database lacks (``alembic upgrade head``) on ``engine``."""
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(
            f"could not migrate the snapshot database: {describe(error)}"
        ) from None


def describe(error: SQLAlchemyError) -> str:
    """Return the first line of a database error, without the statement or its parameters."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else 'no message'}"
