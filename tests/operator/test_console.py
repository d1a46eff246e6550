"""The review page over HTTP: login, runs and chart, findings, closing with CSRF, balances."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret
from reconcile.db.finding_states import get_finding, notes_of
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.settings import ConsoleSettings
from tests.operator.conftest import HOSTILE, NOW, ServedApp, sign_in

TOKEN = "console-token-for-tests-0042-long-enough"


@pytest.fixture
def served(sessions: sessionmaker[Session], tmp_path: Path) -> Iterator[dict[str | None, str]]:
    """The page served on loopback, with and without a token: their base URLs."""
    urls: dict[str | None, str] = {}
    with contextlib.ExitStack() as stack:
        for token in (TOKEN, None):
            settings = ConsoleSettings(Secret(token) if token else None, report_dir=tmp_path)
            app = create_console_app(settings, sessions, lambda: NOW)
            urls[token] = stack.enter_context(ServedApp(app)).url
        yield urls


@pytest.fixture
def clients(served: dict[str | None, str]) -> Iterator[Callable[..., httpx.Client]]:
    opened: list[httpx.Client] = []

    def client(token: str | None = TOKEN) -> httpx.Client:
        opened.append(httpx.Client(base_url=served[token], follow_redirects=False, timeout=10))
        return opened[-1]

    yield client
    for each in opened:
        each.close()


def _login(client: httpx.Client) -> str:
    answer = sign_in(client, TOKEN)
    assert answer.status_code == 303
    page = client.get("/findings").text
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_the_page_is_off_without_a_token(clients: Callable[..., httpx.Client]) -> None:
    client = clients(None)
    assert client.get("/").status_code == 404
    assert client.post("/login", data={"token": ""}).status_code == 404


def test_login_needs_the_token_and_sets_a_strict_httponly_cookie(
    clients: Callable[..., httpx.Client],
) -> None:
    client = clients()
    assert client.get("/findings").headers["location"] == "/login"
    assert sign_in(client, "wrong").status_code == 401
    answer = sign_in(client, TOKEN)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert TOKEN.lower() not in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_runs_page_lists_runs_and_charts_open_drift(
    clients: Callable[..., httpx.Client],
    sessions: sessionmaker[Session],
    tmp_path: Path,
    seeded: dict[str, str],
) -> None:
    client = clients()
    _login(client)
    page = client.get("/").text
    assert "20261201T020000Z-bbbbbb" in page
    assert "42.0 s" in page
    # counts: 2 categories; one chart per currency (JPY, USD), each owed and over-credited apart
    assert page.count("<polyline") == 2 + 2 + 2
    assert "missing_in_moesif: 2" in page  # open at the latest run: pi_owed and pi_jpy
    usd = page.split('id="drift-usd"')[1].split("</div>\n</div>")[0]
    assert "owed to customers (under-credited): +25.00 USD" in usd
    assert "over-credited (Moesif holds too much): -20.00 USD" in usd  # never netted to +5.00
    jpy = page.split('id="drift-jpy"')[1].split('id="drift-usd"')[0]
    assert "owed to customers (under-credited): +5,000 JPY" in jpy
    assert "USD" not in jpy
    assert "No finding is past its due time." in page


def test_findings_filter_sort_and_escape(
    clients: Callable[..., httpx.Client],
    sessions: sessionmaker[Session],
    tmp_path: Path,
    seeded: dict[str, str],
) -> None:
    client = clients()
    _login(client)
    page = client.get("/findings").text
    largest = client.get("/findings", params={"sort": "amount"}).text
    order = [largest.index(seeded[key]) for key in ("jpy", "owed", "hostile")]
    assert order == sorted(order)  # 5000 JPY, then 25.00 USD, then 20.00 USD (by minor units)
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    only = client.get("/findings", params={"category": "missing_in_stripe"}).text
    assert seeded["hostile"] in only
    assert seeded["owed"] not in only
    company = client.get("/findings", params={"company": "umbrella"}).text
    assert seeded["jpy"] in company
    assert seeded["owed"] not in company
    old = client.get("/findings", params={"age": "1d", "sort": "age"}).text
    assert seeded["owed"] not in old
    assert old.index(seeded["hostile"]) < old.index(seeded["jpy"])


def test_finding_page_shows_both_records_and_history(
    clients: Callable[..., httpx.Client],
    sessions: sessionmaker[Session],
    tmp_path: Path,
    seeded: dict[str, str],
) -> None:
    client = clients()
    _login(client)
    page = client.get(f"/findings/{seeded['hostile']}").text
    assert "No Stripe movement" in page
    assert "manual credit &lt;b&gt;by support&lt;/b&gt;" in page
    assert page.count("20261128T020000Z-aaaaaa") >= 2  # first seen, and a history row
    assert "20261201T020000Z-bbbbbb" in page
    assert HOSTILE not in page
    owed = client.get(f"/findings/{seeded['owed']}").text
    assert "cus_1" in owed  # the Stripe movement
    assert "No ledger row." in owed
    assert client.get("/findings/F-0000000000000000").status_code == 404


def test_closing_needs_the_csrf_token_and_records_a_note(
    clients: Callable[..., httpx.Client],
    sessions: sessionmaker[Session],
    tmp_path: Path,
    seeded: dict[str, str],
) -> None:
    client = clients()
    csrf = _login(client)
    target = f"/findings/{seeded['owed']}/close"
    forged = client.post(target, data={"action": "resolve", "note": "x", "csrf": "forged"})
    assert forged.status_code == 403
    assert client.post(target, data={"action": "resolve", "note": "x"}).status_code == 403
    assert (
        client.post(target, data={"action": "delete", "note": "x", "csrf": csrf}).status_code == 400
    )
    assert (
        client.post(target, data={"action": "resolve", "note": " ", "csrf": csrf}).status_code
        == 400
    )
    with sessions() as session:
        assert get_finding(session, seeded["owed"]).status == "open"
    done = client.post(target, data={"action": "ignore", "note": "test payment", "csrf": csrf})
    assert done.status_code == 303
    assert done.headers["location"] == f"/findings?closed={seeded['owed']}"
    with sessions() as session:
        state = get_finding(session, seeded["owed"])
        assert (state.status, state.note, state.closed_at) == ("ignored", "test payment", NOW)
        [note] = notes_of(session, seeded["owed"])
        assert note.source == "page"
    listed = client.get("/findings").text
    assert f'/findings/{seeded["owed"]}"' not in listed
    anonymous = clients()
    assert (
        anonymous.post(f"/findings/{seeded['jpy']}/close", data={"csrf": csrf}).status_code == 401
    )


def test_balances_from_the_latest_csv_highlight_blocked_but_owed(
    clients: Callable[..., httpx.Client],
    sessions: sessionmaker[Session],
    tmp_path: Path,
    seeded: dict[str, str],
) -> None:
    client = clients()
    _login(client)
    computed = client.get("/balances").text
    assert "computed from the snapshot" in computed
    assert "25.00" in computed  # acme's top-up with no ledger row
    (tmp_path / "balances-20261201T020000Z-cccccc.csv").write_text(
        "company_id,subscription_id,currency,stripe_net,moesif_net,delta,current_balance,"
        "pending_activity,available_balance,open_findings\n"
        f'umbrella,sub_u,jpy,5000,0,5000,0,0,0,1\n"{HOSTILE}",sub_h,usd,0,20.00,-20.00,20.00,0,20.00,1\n',
        encoding="utf-8",
    )
    page = client.get("/balances").text
    assert "from balances-20261201T020000Z-cccccc.csv" in page
    assert re.search(r'<tr class="blocked drift">\s*<td class="company_id">umbrella', page)
    assert HOSTILE not in page


def test_mounted_at_the_root_beside_other_routes(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    console = create_console_app(
        ConsoleSettings(Secret(TOKEN), report_dir=tmp_path), sessions, lambda: NOW
    )
    outer = Starlette(
        routes=[
            Route("/healthz", lambda request: JSONResponse({"status": "ok"})),
            Mount("/", app=console),
        ]
    )
    with ServedApp(outer) as served, httpx.Client(base_url=served.url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/findings").headers["location"] == "/login"
        csrf = _login(client)
        assert client.get("/balances").status_code == 200
        answer = client.post("/logout", data={"csrf": csrf})
        assert answer.headers["location"] == "/login"
        assert client.get("/findings").status_code == 303


def test_a_note_the_database_cannot_store_is_400_and_closes_nothing(
    clients: Callable[..., httpx.Client],
    sessions: sessionmaker[Session],
    seeded: dict[str, str],
) -> None:
    client = clients()
    csrf = _login(client)
    target = f"/findings/{seeded['owed']}/close"
    for note in ("paid\x00back", "\x00"):
        answer = client.post(target, data={"action": "resolve", "note": note, "csrf": csrf})
        assert answer.status_code == 400
        assert "cannot be stored" in answer.text
    with sessions() as session:
        assert get_finding(session, seeded["owed"]).status == "open"
        assert notes_of(session, seeded["owed"]) == []
