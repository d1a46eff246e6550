"""A customer's statement in a real headless Chromium: from the balances to the statement."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.settings import ConsoleSettings
from tests.operator.conftest import HOSTILE, NOW, ServedApp
from tests.operator.statement_seed import EXPECTED_ROWS, seed_statement
from tests.operator.test_browser import _click_and_wait, _shot, browser  # noqa: F401

TOKEN = "browser-statement-token-5521"


def test_a_statement_in_a_browser(
    browser: object,  # noqa: F811
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    lost = seed_statement(sessions)
    settings = ConsoleSettings(Secret(TOKEN), report_dir=tmp_path)
    with ServedApp(create_console_app(settings, sessions, lambda: NOW)) as served:
        driver.get(served.url + "/login")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        _click_and_wait(driver, driver.find_element(By.ID, "sign-in"))

        driver.get(served.url + "/balances")  # computed from the snapshot: no CSV yet
        (row,) = [
            row
            for row in driver.find_elements(By.CSS_SELECTOR, "#balances tbody tr")
            if row.find_element(By.CSS_SELECTOR, "td.company_id").text == "stmtco"
        ]
        _click_and_wait(driver, row.find_element(By.CSS_SELECTOR, "a.company-page"))
        assert driver.find_element(By.TAG_NAME, "h1").text == "Company stmtco"
        _click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "a.statement"))

        lines = driver.find_elements(By.CSS_SELECTOR, "#statement tbody tr")
        cells = [[cell.text for cell in line.find_elements(By.TAG_NAME, "td")] for line in lines]
        assert [(row[1], row[5], row[7]) for row in cells] == EXPECTED_ROWS
        assert HOSTILE in [row[4] for row in cells]  # shown as text, not run
        assert driver.find_elements(By.CSS_SELECTOR, "#statement script") == []
        assert driver.find_element(By.ID, "verdict").text == "does not tie out"
        tie_out = driver.find_element(By.ID, "tie-out").text
        assert f"the top-up pi_lost of 20.00 USD is not in the ledger ({lost})" in tie_out
        href = driver.find_element(By.ID, "download").get_attribute("href")
        assert "format=csv" in href
        _shot(driver, "statement", tmp_path)

        _click_and_wait(driver, driver.find_element(By.LINK_TEXT, lost))
        assert lost in driver.find_element(By.TAG_NAME, "h1").text
