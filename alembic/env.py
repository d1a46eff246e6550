"""Alembic environment: migrates the snapshot database named by the caller or the environment."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from reconcile.db.engine import make_engine
from reconcile.db.models import Base

config = context.config
target_metadata = Base.metadata

# Tables other libraries own in the same database (APScheduler's job store; procrastinate's
# job queue, which spreads connected accounts over workers, creates its own procrastinate_*).
FOREIGN_TABLES = frozenset({"apscheduler_jobs"})
FOREIGN_PREFIXES = ("procrastinate_",)


def include_name(name: str | None, type_: str, _parent: object) -> bool:
    foreign = name in FOREIGN_TABLES or (name or "").startswith(FOREIGN_PREFIXES)
    return not (type_ == "table" and foreign)


def database_url() -> str:
    return (
        config.get_main_option("sqlalchemy.url")
        or os.environ.get("RECONCILE_DATABASE_URL")
        or "sqlite:///reconcile.db"
    )


def migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_name=include_name,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=database_url().startswith("sqlite"),
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        migrate(connection)
        return
    if config.config_file_name is not None and not config.attributes.get("quiet"):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = make_engine(database_url())
    with engine.begin() as new_connection:
        migrate(new_connection)
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
