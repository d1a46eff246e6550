"""Signing in and out of the review page in a real headless Chromium: the limit, revocation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.sessions import SESSION_COOKIE
from reconcile.operator.console.settings import ConsoleSettings
from reconcile.rules.login_limit import LoginBudget
from tests.operator.conftest import NOW, ServedApp
from tests.operator.test_browser import TOKEN, _click_and_wait, _shot, browser  # noqa: F401

BUDGET = LoginBudget(per_client=3, overall=60, window=timedelta(minutes=5))


def _page(sessions: sessionmaker[Session], tmp_path: Path) -> ServedApp:
    settings = ConsoleSettings(Secret(TOKEN), report_dir=tmp_path, login_budget=BUDGET)
    return ServedApp(create_console_app(settings, sessions, lambda: NOW))


def _sign_in(driver: object, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "token").send_keys(token)  # type: ignore[attr-defined]
    _click_and_wait(driver, driver.find_element(By.ID, "sign-in"))  # type: ignore[attr-defined]


def test_guessing_the_token_in_a_browser_is_stopped_with_a_429(
    request: pytest.FixtureRequest,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    seeded: dict[str, str],
) -> None:
    from selenium.webdriver.common.by import By

    driver = request.getfixturevalue("browser")
    with _page(sessions, tmp_path) as served:
        driver.get(served.url + "/login")
        for guess in range(BUDGET.per_client):
            _sign_in(driver, f"wrong-token-{guess}")
            assert driver.find_element(By.CSS_SELECTOR, ".error").text == "That token is not right."
        _sign_in(driver, TOKEN)  # the right token, too late
        error = driver.find_element(By.CSS_SELECTOR, ".error").text
        assert error == "Too many sign-in attempts; try again in 300 seconds."
        _shot(driver, "login-limited", tmp_path)

        driver.get(served.url + "/findings")
        assert driver.current_url.endswith("/login")  # not signed in
        answer = httpx.post(served.url + "/login", data={"token": TOKEN}, timeout=10)
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "300"
        assert "default-src 'none'" in answer.headers["content-security-policy"]


def test_a_signed_out_session_cookie_replayed_in_a_browser_opens_nothing(
    request: pytest.FixtureRequest,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    seeded: dict[str, str],
) -> None:
    from selenium.webdriver.common.by import By

    driver = request.getfixturevalue("browser")
    with _page(sessions, tmp_path) as served:
        driver.get(served.url + "/findings")
        assert driver.current_url.endswith("/login")
        _sign_in(driver, TOKEN)
        assert driver.find_element(By.TAG_NAME, "h1").text == "Runs"
        cookie = driver.get_cookie(SESSION_COOKIE)
        assert cookie is not None
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        with httpx.Client(base_url=served.url, timeout=10) as replay:
            replay.cookies.set(SESSION_COOKIE, cookie["value"])
            assert replay.get("/findings").status_code == 200  # the cookie works while signed in

            sign_out = driver.find_element(By.XPATH, "//button[text()='Sign out']")
            _click_and_wait(driver, sign_out)
            assert driver.current_url.endswith("/login")
            assert driver.get_cookie(SESSION_COOKIE) is None

            driver.add_cookie({"name": SESSION_COOKIE, "value": cookie["value"], "path": "/"})
            driver.get(served.url + "/findings")
            assert driver.current_url.endswith("/login")
            assert seeded["owed"] not in driver.page_source
            _shot(driver, "signed-out-replay", tmp_path)

            refused = replay.get("/findings")
            assert refused.status_code == 303
            assert refused.headers["location"] == "/login"
