"""The review page's defences: token length, login limit and CSRF, server-side sessions,
security headers on every answer, relative redirects."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from reconcile.config import Secret
from reconcile.errors import ConfigError, ExitCode
from reconcile.operator.console.app import LOGIN_COOKIE, create_console_app, relative_location
from reconcile.operator.console.sessions import SESSION_COOKIE, SessionStore
from reconcile.operator.console.settings import ConsoleSettings
from reconcile.rules.login_limit import LoginBudget
from reconcile.security_headers import SECURITY_HEADERS
from tests.operator.conftest import NOW, sign_in

TOKEN = "a-console-token-of-forty-characters-0001"
OTHER = "another-console-token-of-forty-chars-002"


class InProcess(httpx.BaseTransport):
    """Hands each request to the app in this process, as if it came from ``address``."""

    def __init__(self, app: Starlette, address: str) -> None:
        self.transport = httpx.ASGITransport(app=app, client=(address, 40000))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def answer() -> httpx.Response:
            response = await self.transport.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return asyncio.run(answer())


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _app(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    token: str = TOKEN,
    clock: Callable[[], datetime] = lambda: NOW,
    store: SessionStore | None = None,
    budget: LoginBudget | None = None,
) -> Starlette:
    settings = ConsoleSettings(Secret(token), report_dir=tmp_path)
    if budget is not None:
        settings = ConsoleSettings(Secret(token), report_dir=tmp_path, login_budget=budget)
    return create_console_app(settings, sessions, clock, store)


def _client(
    app: Starlette, address: str = "198.51.100.7", base_url: str = "http://console.test"
) -> httpx.Client:
    client = httpx.Client(transport=InProcess(app, address), base_url=base_url)
    client.app = app  # type: ignore[attr-defined]
    return client


def _has_security_headers(answer: object) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value, name  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "token", ["", "x" * 31, "short", "a" * 40 + "\x07"], ids=["empty", "31", "short", "control"]
)
def test_a_weak_token_is_refused_when_the_page_is_built(
    sessions: sessionmaker[Session], tmp_path: Path, token: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        create_console_app(
            ConsoleSettings(Secret(token), report_dir=tmp_path), sessions, lambda: NOW
        )
    assert refused.value.exit_code == ExitCode.USAGE
    assert "RECONCILE_CONSOLE_TOKEN" in str(refused.value)
    assert token.strip() == "" or token not in str(refused.value)
    create_console_app(
        ConsoleSettings(Secret("x" * 32), report_dir=tmp_path), sessions, lambda: NOW
    )


def test_a_login_needs_the_form_s_csrf_token_and_its_cookie(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    client = _client(_app(sessions, tmp_path))
    assert client.post("/login", data={"token": TOKEN}).status_code == 403
    form = client.get("/login")
    cookie = form.headers["set-cookie"].lower()
    assert LOGIN_COOKIE in cookie
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    assert client.post("/login", data={"token": TOKEN, "csrf": csrf + "x"}).status_code == 403
    stranger = _client(client.app)  # a page elsewhere cannot read the login cookie
    refused = stranger.post("/login", data={"token": TOKEN, "csrf": csrf})
    assert refused.status_code == 403
    _has_security_headers(refused)
    assert f"{SESSION_COOKIE}=" not in refused.headers.get("set-cookie", "")
    assert sign_in(stranger, TOKEN).status_code == 303


def test_login_attempts_are_limited_per_client_and_overall_with_a_429(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = Clock()
    app = _app(sessions, tmp_path, clock=clock, budget=LoginBudget(3, 5, timedelta(minutes=5)))
    guesser = _client(app, "203.0.113.1")
    for _ in range(3):
        assert sign_in(guesser, "wrong-token").status_code == 401
    refused = sign_in(guesser, TOKEN)  # even the right token waits its turn
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "300"
    assert "Too many sign-in attempts; try again in 300 seconds." in refused.text
    _has_security_headers(refused)

    others = [_client(app, f"203.0.113.{n}") for n in (2, 3)]
    assert sign_in(others[0], "wrong-token").status_code == 401
    assert sign_in(others[1], TOKEN).status_code == 303  # a success forgets its own attempts
    assert sign_in(others[0], "wrong-token").status_code == 401
    overall = sign_in(_client(app, "203.0.113.4"), TOKEN)
    assert overall.status_code == 429  # all clients together have used the budget

    clock.now += timedelta(minutes=5, seconds=1)
    assert sign_in(guesser, TOKEN).status_code == 303


def test_a_session_lives_on_the_server_and_sign_out_revokes_it(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    store = SessionStore()
    client = _client(_app(sessions, tmp_path, store=store))
    assert sign_in(client, TOKEN).status_code == 303
    session_id = client.cookies[SESSION_COOKIE]
    assert len(store) == 1
    assert TOKEN not in session_id
    assert "." not in session_id  # an id, not signed data
    page = client.get("/findings")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)

    assert client.post("/logout", data={"csrf": "forged"}).status_code == 303
    assert client.get("/findings").status_code == 200  # a forged sign-out changes nothing
    out = client.post("/logout", data={"csrf": csrf})
    assert out.headers["location"] == "/login"
    assert len(store) == 0

    replay = _client(client.app)
    replay.cookies.set(SESSION_COOKIE, session_id)
    answer = replay.get("/findings")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    closing = replay.post("/findings/F-1/close", data={"csrf": csrf, "action": "resolve"})
    assert closing.status_code == 401


def test_a_new_token_revokes_every_session(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    store = SessionStore()
    before = _client(_app(sessions, tmp_path, TOKEN, store=store))
    assert sign_in(before, TOKEN).status_code == 303
    session_id = before.cookies[SESSION_COOKIE]
    after = _client(_app(sessions, tmp_path, OTHER, store=store))
    after.cookies.set(SESSION_COOKIE, session_id)
    assert after.get("/findings").headers["location"] == "/login"
    assert len(store) == 0
    assert before.get("/findings").status_code == 303  # gone for the old page too


def test_a_session_ends_after_its_lifetime(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    clock = Clock()
    client = _client(_app(sessions, tmp_path, clock=clock))
    assert sign_in(client, TOKEN).status_code == 303
    clock.now += timedelta(hours=11, minutes=59)
    assert client.get("/findings").status_code == 200
    clock.now += timedelta(minutes=2)
    assert client.get("/findings").status_code == 303


def test_every_answer_carries_the_security_headers(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    def broken() -> Session:
        raise RuntimeError("the database is gone")

    client = _client(_app(sessions, tmp_path))
    answers = [
        client.get("/login"),
        client.get("/findings"),  # 303
        client.get("/no-such-page"),  # 404
        client.put("/login"),  # 405
        client.post("/login", data={"token": TOKEN}),  # 403
        client.post("/findings/F-1/close"),  # 401
    ]
    assert sign_in(client, "wrong-token").status_code == 401
    answers.append(sign_in(client, "wrong-token"))
    failing = _client(_app(broken, tmp_path))  # type: ignore[arg-type]
    assert sign_in(failing, TOKEN).status_code == 303
    answers.append(failing.get("/"))  # 500
    off = create_console_app(ConsoleSettings(None, report_dir=tmp_path), sessions, lambda: NOW)
    answers.append(_client(off).get("/"))  # 404, page off
    assert [answer.status_code for answer in answers] == [
        200,
        303,
        404,
        405,
        403,
        401,
        401,
        500,
        404,
    ]
    for answer in answers:
        _has_security_headers(answer)
    assert "database is gone" not in answers[-2].text


def test_redirects_are_relative_and_never_built_from_the_host_header(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    client = _client(_app(sessions, tmp_path))
    hostile = {"Host": "evil.example"}
    for path in ("/", "/findings", "/findings/", "/balances/", "//evil.example/"):
        answer = client.get(path, headers=hostile)
        location = answer.headers.get("location", "")
        assert "evil" not in location, path
        assert location == "" or (location.startswith("/") and not location.startswith("//"))
    assert sign_in(client, TOKEN).headers["location"] == "/"
    assert relative_location("", "//evil.example") == "/evil.example"
    assert relative_location("/console", "/findings") == "/console/findings"
    assert relative_location("", "/\\evil.example") == "/evil.example"


def test_secure_cookies_are_marked_secure(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    settings = ConsoleSettings(Secret(TOKEN), report_dir=tmp_path, secure_cookies=True)
    app = create_console_app(settings, sessions, lambda: NOW)
    client = _client(app, base_url="https://console.test")
    assert "secure" in client.get("/login").headers["set-cookie"].lower()
    signed = sign_in(client, TOKEN)
    session_cookie = [c for c in signed.headers.get_list("set-cookie") if SESSION_COOKIE + "=" in c]
    assert session_cookie
    assert "secure" in session_cookie[0].lower()
