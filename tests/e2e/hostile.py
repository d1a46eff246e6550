"""The harness of the hostile-input table: a scene to set up, one CLI run, and its checks."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import column, create_engine, inspect, select, table, text
from sqlalchemy.engine import make_url

from reconcile.cli import main
from reconcile.domain.times import to_iso
from reconcile.domain.values import REPORT_COLUMNS
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe
from reconcile.report import FORMULA_TRIGGERS
from tests.e2e.conftest import MOESIF_TOKEN, STRIPE_KEY, World
from tests.e2e.test_cli import _one_error_line

DB_PASSWORD = "pg-canary-Pw-7391"
WEBHOOK_SECRET = "whsec_canary_hook_5150"
NOTIFY_URL = "http://127.0.0.1:9/hooks/canary-notify-8086"
CONSOLE_TOKEN = "console-canary-token-2718-long-enough"
TOPUP_TOKEN = "topup-canary-token-3141"
CANARIES = (
    STRIPE_KEY,
    MOESIF_TOKEN,
    DB_PASSWORD,
    WEBHOOK_SECRET,
    NOTIFY_URL,
    "canary-notify-8086",
    CONSOLE_TOKEN,
    TOPUP_TOKEN,
)
"""Every configured secret, and the distinctive tail of the notify URL."""

TEXT_COLUMNS = tuple(
    column
    for column in REPORT_COLUMNS
    if not column.endswith(("_amount", "_created_at", "_seen_at")) and column != "delta"
)
"""The CSV columns that hold text a spreadsheet could run (amounts and times are not text)."""

ERROR_PREFIX = "reconcile: error:"


@dataclass
class Scene:
    """What one case sets up: the fakes, the arguments, and the postings it expects."""

    world: World
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path
    argv: list[str]
    expected_posts: set[str] = field(default_factory=set)
    """Transaction ids that must be posted, each exactly once; nothing else may be."""
    checks: list[Callable[[Ran], None]] = field(default_factory=list)
    """Further assertions a case adds about its outcome."""
    database_url: str = ""
    """The database to dump for canaries (the world's unless a case points elsewhere)."""

    def setenv(self, name: str, value: str) -> None:
        """Set a variable of the run's environment."""
        self.monkeypatch.setenv(name, value)

    @property
    def stripe(self) -> FakeStripe:
        """The fake Stripe."""
        return self.world.stripe

    @property
    def moesif(self) -> FakeMoesif:
        """The fake Moesif."""
        return self.world.moesif

    @property
    def now(self) -> datetime:
        """The time the history is seeded around."""
        return self.world.now

    def ago(self, **delta: float) -> datetime:
        """Return ``now`` minus a ``timedelta(**delta)``."""
        return self.world.now - timedelta(**delta)


@dataclass
class Ran:
    """What one run left behind."""

    code: int
    out: str
    err: str
    rows: list[dict[str, str]]
    report_text: str
    database_text: str


@dataclass(frozen=True)
class Case:
    """One row of the table: a hostile setup and everything its run must show.

    ``message`` is a fragment of the one line that says what happened: the single error line
    when the run fails (exit 2, 3, 75), else a line of stdout or stderr. ``finding`` is a
    category the CSV must hold. ``expected_posts`` set by ``setup`` say what may be posted.
    """

    name: str
    setup: Callable[[Scene], None]
    exit: int
    message: str
    finding: str | None = None
    both_databases: bool = False
    xfail: str | None = None


def canary_environment(database_url: str) -> tuple[str, dict[str, str]]:
    """Return the database URL (with a password on PostgreSQL) and the other secrets."""
    if database_url.startswith("postgresql"):
        database_url = (
            make_url(database_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
        )
    return database_url, {
        "RECONCILE_DATABASE_URL": database_url,
        "STRIPE_WEBHOOK_SECRET": f"{WEBHOOK_SECRET},whsec_canary_old_6262",
        "RECONCILE_NOTIFY_URL": NOTIFY_URL,
        "RECONCILE_CONSOLE_TOKEN": CONSOLE_TOKEN,
        "RECONCILE_TOPUP_TOKEN": TOPUP_TOKEN,
    }


@dataclass
class Hostile:
    """The fixture's answer: a scene factory over fakes that echo credentials back."""

    world: World
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path

    def scene(self) -> Scene:
        """Return a fresh scene of a run over the last seven days."""
        return Scene(
            world=self.world,
            monkeypatch=self.monkeypatch,
            tmp_path=self.tmp_path,
            argv=["--since", to_iso(self.world.now - timedelta(days=2))],
            database_url=self.world.database_url,
        )


def hostile_world(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Hostile]:
    """Both fakes on loopback, the Stripe one echoing keys, and every secret set to a canary."""
    monkeypatch.chdir(tmp_path)
    url, secrets = canary_environment(database_url)
    with (
        FakeStripe(api_key=STRIPE_KEY, echo_key=True) as stripe,
        FakeMoesif(token=MOESIF_TOKEN) as moesif,
    ):
        environment = {
            "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": stripe.base_url,
            "MOESIF_MANAGEMENT_TOKEN": f"Bearer {MOESIF_TOKEN}",
            "MOESIF_API_BASE": moesif.base_url,
            "RECONCILE_REPORT_DIR": str(tmp_path / "reports"),
            "STRIPE_MAX_REQUESTS_PER_SECOND": "1000",
            "RECONCILE_RETRY_BASE_DELAY": "0.001",
            "RECONCILE_STRIPE_REPORT_POLL_SECONDS": "0.001",
            **secrets,
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        world = World(
            stripe=stripe,
            moesif=moesif,
            now=datetime.now(UTC).replace(microsecond=0),
            database_url=url,
            report_dir=tmp_path / "reports",
            environment=environment,
        )
        yield Hostile(world, monkeypatch, tmp_path)


def run(scene: Scene, capsys: pytest.CaptureFixture[str]) -> Ran:
    """Run the command line of ``scene`` and gather everything it wrote."""
    try:
        code = main(scene.argv)
    except SystemExit as stopped:
        code = stopped.code if isinstance(stopped.code, int) else 2
    captured = capsys.readouterr()
    reports = scene.world.reports() if scene.world.report_dir.is_dir() else []
    report_text = "".join(path.read_text(encoding="utf-8") for path in reports)
    rows: list[dict[str, str]] = []
    if reports:
        rows = scene.world.report_rows()
    return Ran(code, captured.out, captured.err, rows, report_text, dump(scene.database_url))


def dump(database_url: str) -> str:
    """Return every row of every table of the database, as text (empty if unreadable)."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        if not path.is_file() or path.stat().st_size == 0:
            return ""
    try:
        engine = create_engine(database_url)
    except Exception:  # noqa: BLE001 - a URL the case made unusable has nothing to dump
        return ""
    try:
        with engine.connect() as connection:
            lines = []
            for name in inspect(connection).get_table_names():
                columns = [column["name"] for column in inspect(connection).get_columns(name)]
                chosen = table(name, *[column(each) for each in columns])
                lines += [repr(tuple(row)) for row in connection.execute(select(chosen))]
            return "\n".join(lines)
    except Exception:  # noqa: BLE001 - a file the case spoiled on purpose
        return ""
    finally:
        engine.dispose()


def run_statuses(database_url: str) -> list[str]:
    """Return the status of every run row, oldest first (none when there is no database)."""
    if not dump(database_url):
        return []
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            if "runs" not in inspect(connection).get_table_names():
                return []
            return list(connection.scalars(text("SELECT status FROM runs ORDER BY started_at")))
    finally:
        engine.dispose()


def check(case: Case, scene: Scene, ran: Ran) -> None:
    """Assert what every case must show: exit, one line, no traceback, posts, no secret."""
    everything = ran.out + ran.err
    assert "Traceback" not in everything, everything[-2000:]
    assert ran.code == case.exit, (ran.code, ran.err[-800:])
    fragment = case.message or str(case.finding)
    if case.exit in (2, 3, 75):
        assert fragment in _one_error_line(ran.err), ran.err[-800:]
    else:
        assert ERROR_PREFIX not in ran.err, ran.err[-800:]
        assert [line for line in everything.splitlines() if fragment in line], everything
    posted = scene.moesif.applied_counts()
    assert all(count == 1 for count in posted.values()), posted
    assert set(posted) == scene.expected_posts
    if case.finding is not None:
        assert case.finding in {row["category"] for row in ran.rows}
    for row in ran.rows:
        for name in TEXT_COLUMNS:
            assert not row.get(name, "").startswith(FORMULA_TRIGGERS), (name, row[name])
    for place, written in (
        ("output", everything),
        ("report", ran.report_text),
        ("database", ran.database_text),
    ):
        for canary in CANARIES:
            assert canary not in written, (place, canary)
    assert not re.search(r"\x1b\[", everything), "a terminal escape sequence was printed"
    assert "running" not in run_statuses(scene.database_url), "a run was left running"
    for more in scene.checks:
        more(ran)
