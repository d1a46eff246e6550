"""The review page in a real headless Chromium: sign in, filter, close a finding, stay text-safe."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret
from reconcile.db.finding_states import get_finding
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.settings import ConsoleSettings
from tests.operator.conftest import HOSTILE, NOW, ServedApp

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "browser-console-token-7781-long-enough"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
"""Screenshots land here (git-ignored) so CI can keep them."""


def _browser_present() -> bool:
    return all(shutil.which(path) for path in (CHROMIUM, CHROMEDRIVER))


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    if not _browser_present():
        # Fails instead in CI (tests/no_skips_in_ci.py).
        pytest.skip("chromium and chromium-driver are not installed (run .ci/browser-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager never downloads anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-background-networking",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: object, name: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for folder in (tmp_path, ARTIFACTS):
        assert driver.save_screenshot(str(folder / f"{name}.png"))


def test_review_in_a_browser(
    browser: object, sessions: sessionmaker[Session], tmp_path: Path, seeded: dict[str, str]
) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    (tmp_path / "balances-20261201T020000Z-cccccc.csv").write_text(
        "company_id,subscription_id,currency,stripe_net,moesif_net,delta,current_balance,"
        "pending_activity,available_balance,open_findings\n"
        "umbrella,sub_umbrella,jpy,5000,0,5000,0,0,0,1\n"
        "acme,sub_acme,usd,70.00,50.00,20.00,50.00,0.00,50.00,1\n"
        f'"{HOSTILE}",sub_h,usd,0.00,20.00,-20.00,20.00,0.00,20.00,1\n'
        "globex,sub_globex,usd,100.00,100.00,0.00,100.00,0.00,100.00,0\n",
        encoding="utf-8",
    )
    settings = ConsoleSettings(Secret(TOKEN), report_dir=tmp_path)
    with ServedApp(create_console_app(settings, sessions, lambda: NOW)) as served:
        driver.get(served.url + "/")
        assert driver.current_url.endswith("/login")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        _click_and_wait(driver, driver.find_element(By.ID, "sign-in"))
        assert driver.find_element(By.TAG_NAME, "h1").text == "Runs"
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg polyline")) == 2 + 2 + 2
        _shot(driver, "runs", tmp_path)

        driver.get(served.url + "/findings")
        companies = [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "td.company")]
        assert HOSTILE in companies  # shown as text, not run
        assert driver.find_elements(By.CSS_SELECTOR, "td.company script") == []
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018
        _shot(driver, "findings", tmp_path)

        Select(driver.find_element(By.ID, "category")).select_by_value("missing_in_moesif")
        _click_and_wait(driver, driver.find_element(By.ID, "filter"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#findings tbody tr")
        assert len(rows) == 2
        assert HOSTILE not in driver.find_element(By.ID, "findings").text

        _click_and_wait(driver, driver.find_element(By.LINK_TEXT, seeded["owed"]))
        assert "Stripe" in driver.find_element(By.CSS_SELECTOR, ".side").text
        _shot(driver, "finding", tmp_path)
        driver.find_element(By.ID, "note").send_keys("credited by hand in Moesif, ticket 4411")
        _click_and_wait(driver, driver.find_element(By.ID, "resolve"))
        assert seeded["owed"] in driver.find_element(By.ID, "flash").text
        listed = driver.find_element(By.ID, "findings").text
        assert seeded["owed"] not in listed
        assert seeded["jpy"] in listed

        driver.get(served.url + "/balances")
        blocked = driver.find_elements(By.CSS_SELECTOR, "#balances tr.blocked td.company_id")
        assert [cell.text for cell in blocked] == ["umbrella"]
        _shot(driver, "balances", tmp_path)

    with sessions() as session:
        state = get_finding(session, seeded["owed"])
        assert state.status == "resolved"
        assert state.note == "credited by hand in Moesif, ticket 4411"


def _click_and_wait(driver: object, element: object) -> None:
    """Click what submits a form or follows a link, and wait until the next page has loaded.

    Reading the page right after the click could read the old one on a busy machine.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 30).until(lambda _driver: _replaced(page))
    WebDriverWait(driver, 30).until(
        lambda current: current.execute_script("return document.readyState") == "complete"
    )


def _replaced(page: object) -> bool:
    """Whether the old page's root element left the document (a new page replaced it).

    Chromium names a node of a page just replaced either as stale or, mid-navigation, as one
    that "does not belong to the document"; both mean the old page is gone.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        page.is_enabled()  # type: ignore[attr-defined]
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False
