"""A company's page on the review page links to its statement: shown as HTML, offered as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.settings import ConsoleSettings
from reconcile.rules.statement import COLUMNS
from tests.operator.conftest import HOSTILE, NOW, ServedApp
from tests.operator.statement_seed import EXPECTED_ROWS, seed_statement

TOKEN = "console-statement-token-0099"


@pytest.fixture
def client(sessions: sessionmaker[Session], tmp_path: Path) -> Iterator[httpx.Client]:
    settings = ConsoleSettings(Secret(TOKEN), report_dir=tmp_path)
    with (
        ServedApp(create_console_app(settings, sessions, lambda: NOW)) as served,
        httpx.Client(base_url=served.url, timeout=10) as opened,
    ):
        yield opened


def _signed_in(client: httpx.Client) -> httpx.Client:
    assert client.post("/login", data={"token": TOKEN}).status_code == 303
    return client


def test_the_statement_needs_a_login(client: httpx.Client) -> None:
    answer = client.get("/companies/stmtco/statement", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"


def test_a_company_page_links_to_its_statement_and_its_csv(
    client: httpx.Client, sessions: sessionmaker[Session]
) -> None:
    lost = seed_statement(sessions)
    _signed_in(client)

    assert 'href="/companies/stmtco"' in client.get("/balances").text
    company = client.get("/companies/stmtco")
    assert company.status_code == 200
    assert "/companies/stmtco/statement?subscription=sub_stmt" in company.text

    page = client.get("/companies/stmtco/statement", params={"subscription": "sub_stmt"})
    assert page.status_code == 200
    assert "does not tie out" in page.text
    assert f'href="/findings/{lost}"' in page.text
    assert HOSTILE not in page.text  # escaped, shown as text

    download = client.get(
        "/companies/stmtco/statement", params={"subscription": "sub_stmt", "format": "csv"}
    )
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert tuple(rows[0]) == COLUMNS
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == EXPECTED_ROWS
    (line,) = [r for r in rows if r["transaction_id"] == "pi_lost"]
    assert line["finding_id"] == lost
    (promotion,) = [r for r in rows if r["kind"] == "promotion"]
    assert promotion["description"] == HOSTILE  # '<' starts no formula: left as it is


def test_unknown_companies_and_bad_windows_are_answered_plainly(
    client: httpx.Client, sessions: sessionmaker[Session]
) -> None:
    seed_statement(sessions)
    _signed_in(client)
    assert client.get("/companies/nobody").status_code == 404
    assert client.get("/companies/nobody/statement").status_code == 404
    bad = client.get("/companies/stmtco/statement", params={"since": "yesterday"})
    assert bad.status_code == 400
    backwards = {"since": "2026-11-20", "until": "2026-11-10"}
    assert client.get("/companies/stmtco/statement", params=backwards).status_code == 400
