"""The exception queue in headless Chromium: bulk assign, a correction confirmed then settled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.orm import sessionmaker

from reconcile.cli import _page_corrector, main
from reconcile.clients import utc_now
from reconcile.config import Secret
from reconcile.db.engine import make_engine
from reconcile.db.models import FindingState
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.queue import QueueTools
from reconcile.operator.console.settings import ConsoleSettings
from tests.e2e.conftest import World
from tests.e2e.test_queue import _cents_row
from tests.operator.conftest import ServedApp
from tests.operator.test_browser import _click_and_wait, _shot, browser  # noqa: F401

TOKEN = "browser-queue-token-for-tests-0099"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_correction_in_the_browser_from_confirmation_to_the_next_run_settling_it(
    browser: object,  # noqa: F811
    world: World,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    _cents_row(world)
    assert main(["--since", world.since]) == 1
    engine = make_engine(world.database_url)
    sessions = sessionmaker(engine)
    with sessions() as session:
        finding = session.query(FindingState).filter_by(category="amount_mismatch").one()
        finding_id = finding.finding_id
    correction = f"corr_{finding_id}"
    tools = QueueTools(corrector=_page_corrector(dict(os.environ), sessions, utc_now))
    settings = ConsoleSettings(Secret(TOKEN), report_dir=world.report_dir)
    app = create_console_app(settings, sessions, utc_now, tools=tools)
    with ServedApp(app) as served:
        driver.get(served.url + "/login")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        _click_and_wait(driver, driver.find_element(By.ID, "sign-in"))

        driver.get(served.url + "/findings")
        driver.find_element(By.CSS_SELECTOR, f'input[value="{finding_id}"]').click()
        driver.find_element(By.ID, "bulk-owner").send_keys("dana")
        _click_and_wait(driver, driver.find_element(By.ID, "bulk-assign"))
        assert "dana" in driver.find_element(By.ID, "findings").text
        _shot(driver, "queue", tmp_path)

        _click_and_wait(driver, driver.find_element(By.LINK_TEXT, finding_id))
        assert "What to do" in driver.find_element(By.ID, "what-to-do").text
        _click_and_wait(driver, driver.find_element(By.ID, "prepare-correction"))
        shown = driver.find_element(By.ID, "confirmation").text
        assert (
            "debit of 2,475.00 USD on company acme, subscription sub_acme, "
            f"transaction_id {correction}"
        ) in shown
        legs = driver.find_element(By.ID, "plan-legs").text
        assert f"debit 2,475.00 USD -2,475.00 USD acme sub_acme {correction}" in legs
        assert world.moesif.applied_count(correction) == 0
        _shot(driver, "correction-confirm", tmp_path)
        driver.find_element(By.ID, "note").send_keys("cents posted as dollars")
        _click_and_wait(driver, driver.find_element(By.ID, "post-correction"))
        assert f"{correction}: posted" in driver.find_element(By.ID, "legs").text
        _shot(driver, "correction-posted", tmp_path)
    assert world.moesif.applied_count(correction) == 1

    assert main(["--since", world.since]) == 0
    assert [(row["category"], row["action"]) for row in world.report_rows()] == [
        ("amount_mismatch", "resolved")
    ]
    with sessions() as session:
        state = session.get(FindingState, finding_id)
        assert state is not None
        assert (state.status, state.owner) == ("closed", "dana")
    engine.dispose()
