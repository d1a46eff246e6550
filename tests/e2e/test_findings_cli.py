"""``reconcile findings`` and ``reconcile --help`` at the edges: pipes, bad input, filters."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

import reconcile
from reconcile.cli import COMMANDS, main
from reconcile.domain.vocab import Category
from tests.operator.conftest import add_state

ROOT = str(Path(reconcile.__file__).resolve().parents[1])


def _seed(engine: Engine, extra: int = 0) -> None:
    with Session(engine) as session, session.begin():
        add_state(session, company_id="ACME-eu", moesif_id="m-1", delta_minor=-2000)
        add_state(
            session,
            company_id="umbrella",
            category="missing_in_moesif",
            transaction_id="pi_jpy",
            moesif_id=None,
            currency="jpy",
            delta_minor=5000,
        )
        add_state(session, company_id="acme_us", moesif_id="m-2", delta_minor=-1000)
        add_state(session, company_id="globex", moesif_id="m-3", delta_minor=-500)
        for number in range(extra):
            add_state(session, company_id=f"bulk-{number:05d}", moesif_id=f"bulk-{number}")


@pytest.fixture
def seeded_url(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    _seed(engine)
    url = engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("RECONCILE_DATABASE_URL", url)
    return url


def _environment(database_url: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
    environ["RECONCILE_DATABASE_URL"] = database_url
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, environ.get("PYTHONPATH")]))
    return environ


def _companies(capsys: pytest.CaptureFixture[str], *company: str) -> list[str]:
    capsys.readouterr()
    assert main(["findings", "--format", "csv", "--company", *company]) == 0
    rows = csv.DictReader(io.StringIO(capsys.readouterr().out))
    return sorted(row["company_id"] for row in rows)


def test_the_company_filter_ignores_case_and_matches_part_of_the_id(
    seeded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _companies(capsys, "acme") == ["ACME-eu", "acme_us"]
    assert _companies(capsys, "Acme-EU") == ["ACME-eu"]
    assert _companies(capsys, "BREL") == ["umbrella"]
    assert _companies(capsys, "_") == ["acme_us"]  # a LIKE wildcard is a plain character
    assert _companies(capsys, "%") == []
    assert _companies(capsys, "glob", "umb") == ["globex", "umbrella"]


def test_the_findings_table_has_a_currency_column(
    seeded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["findings"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    columns = header.split()
    assert columns[columns.index("delta") - 1] == "currency"
    umbrella = next(row for row in rows if "umbrella" in row)
    currency, delta = header.index("currency"), header.index("delta")
    assert umbrella[currency:delta].strip() == "jpy"
    assert umbrella[delta:].split()[0] == "5000"


def test_an_unknown_category_is_exit_2_naming_the_valid_ones(
    seeded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["findings", "--category", "amount_mismatch", "missing_in_moseif"])
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "missing_in_moseif" in line
    assert all(category.value in line for category in Category)
    capsys.readouterr()
    assert main(["findings", "--format", "csv", "--category", "missing_in_moesif"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_csv_into_a_closed_pipe_ends_quietly(engine: Engine, tmp_path: Path) -> None:
    _seed(engine)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "reconcile", "findings", "--format", "csv"],
            env=_environment(engine.url.render_as_string(hide_password=False)),
            cwd=tmp_path,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 0


def test_csv_piped_into_head_prints_no_traceback(sqlite_url: str, tmp_path: Path) -> None:
    from reconcile.db.engine import make_engine, upgrade_to_head

    engine = make_engine(sqlite_url)
    upgrade_to_head(engine)
    _seed(engine, extra=1500)  # far more than a pipe holds
    engine.dispose()
    done = subprocess.run(
        [
            "bash",
            "-c",
            f'set -o pipefail; "{sys.executable}" -m reconcile findings --format csv | head -3',
        ],
        env=_environment(sqlite_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stderr == ""
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 3
    assert done.stdout.startswith("finding_id,")


def test_help_lists_every_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reconcile", "--help"],
        env=_environment(f"sqlite:///{tmp_path / 'unused.db'}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for name in COMMANDS:
        assert f"reconcile {name} " in done.stdout, name
    assert "serve" in COMMANDS


def _order(capsys: pytest.CaptureFixture[str], *options: str) -> list[str]:
    capsys.readouterr()
    assert main(["findings", "--format", "csv", *options]) == 0
    rows = csv.DictReader(io.StringIO(capsys.readouterr().out))
    return [f"{row['company_id']} {row['delta']} {row['currency']}" for row in rows]


def test_sort_by_amount_ranks_within_each_currency_blocked_but_owed_first(
    seeded_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconcile.db.subscriptions import keep_currency
    from tests.operator.conftest import NOW

    with Session(engine) as session, session.begin():
        add_state(
            session,
            company_id="blocked",
            subscription_id="sub_blocked",
            category="missing_in_moesif",
            transaction_id="pi_blocked",
            moesif_id=None,
            delta_minor=300,
        )
        keep_currency(session, "sub_blocked", "usd", NOW, "blocked", available_balance_minor=0)
        add_state(
            session,
            company_id="hooli",
            category="missing_in_moesif",
            transaction_id="pi_jpy_small",
            moesif_id=None,
            currency="jpy",
            delta_minor=200,
        )
    # Raw minor units would rank 200 JPY (200) after 5.00 USD (500) and the blocked customer's
    # 3.00 USD last; ranked per currency, the largest of each currency comes before the second
    # of any, and the customer blocked while owed comes first.
    assert _order(capsys, "--sort", "amount") == [
        "blocked 3.00 usd",
        "umbrella 5000 jpy",
        "ACME-eu -20.00 usd",
        "hooli 200 jpy",
        "acme_us -10.00 usd",
        "globex -5.00 usd",
    ]
    assert _order(capsys, "--sort", "amount", "--company", "acme") == [
        "ACME-eu -20.00 usd",
        "acme_us -10.00 usd",
    ]
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main(["findings", "--sort", "size"])
    assert refused.value.code == 2
