"""Fixtures every test shares: a clean environment, loopback-only network, migrated databases."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from reconcile.db.engine import make_engine, upgrade_to_head

REFERENCE_DATA = Path(__file__).resolve().parent / "data"
"""Stripe's fixtures and Moesif's OpenAPI document, vendored with their licences."""
POSTGRES_ADMIN_URL = os.environ.get(
    "RECONCILE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
_PREFIXES = ("STRIPE_", "MOESIF_", "RECONCILE_")

pytest_plugins = ["pytester", "tests.no_skips_in_ci", "tests.simulation.session"]
"""``tests.no_skips_in_ci``: under ``CI=true`` every skip fails the run; pytester tests it.
``tests.simulation.session``: the simulation's one seed and its coverage summary."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--soak``: run the seeded simulation (tests/simulation) with many more examples.

    ``--soak-minutes N`` soaks it for N minutes per test, in rounds of new seeds.
    """
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the seeded simulation long: many examples, random seed, SIGKILLs",
    )
    parser.addoption(
        "--soak-minutes",
        type=float,
        default=None,
        metavar="N",
        help="soak the simulation in rounds of new seeds until N minutes are spent (per test)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The mutation check (marked ``mutations``, minutes long) runs only when ``-m`` names it.

    Deselected, not skipped: under ``CI=true`` a skip fails the run (tests/no_skips_in_ci.py).
    """
    if "mutations" in str(config.getoption("markexpr") or ""):
        return
    left_out = [item for item in items if item.get_closest_marker("mutations")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("mutations")]


@pytest.fixture(autouse=True)
def _scrub_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the operator's credentials or settings."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES) and name != "RECONCILE_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(sock: socket.socket, address: object) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        loopback = ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {host!r}")


def _guarded_connect(sock: socket.socket, address: object) -> None:
    _check_address(sock, address)
    _real_connect(sock, address)  # type: ignore[arg-type]


def _guarded_connect_ex(sock: socket.socket, address: object) -> int:
    _check_address(sock, address)
    return _real_connect_ex(sock, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every outbound connection that is not to this machine."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """Create a database of this test process on the local PostgreSQL; yield its URL."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"reconcile_test_{os.getpid()}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            connection.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError as error:
        admin.dispose()
        server = make_url(POSTGRES_ADMIN_URL)
        pytest.skip(
            f"PostgreSQL is not reachable at {server.host}:{server.port}: "
            f"{type(error.orig).__name__}"
        )
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def _empty_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once SQLite and once PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'snapshot.db'}"
    url: str = request.getfixturevalue("postgres_database")
    _empty_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An empty SQLite database URL, for tests that need only one backend."""
    return f"sqlite:///{tmp_path / 'snapshot.db'}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated engine, once on SQLite and once on PostgreSQL."""
    migrated = make_engine(database_url)
    upgrade_to_head(migrated)
    yield migrated
    migrated.dispose()
