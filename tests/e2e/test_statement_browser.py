"""The demo's ``reconcile statement --format html`` in a real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconcile.cli import main
from reconcile.demo import seed, seed_review_cases
from tests.e2e.conftest import World
from tests.operator.test_browser import _shot, browser  # noqa: F401


def test_the_demos_html_statement_shows_each_line_and_names_each_difference(
    browser: object,  # noqa: F811
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from selenium.webdriver.common.by import By

    seed(world.stripe, world.moesif, world.now)
    seed_review_cases(world.stripe, world.moesif, world.now)
    assert main(["--since", world.since]) == 1
    capsys.readouterr()
    argv = ["statement", "--company", "initech", "--since", world.since, "--format", "html"]
    assert main(argv) == 1
    page = Path(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("statement: "))

    driver = browser
    driver.get(page.as_uri())
    lines = driver.find_elements(By.CSS_SELECTOR, "#statement tbody tr")
    cells = [[cell.text for cell in line.find_elements(By.TAG_NAME, "td")] for line in lines]
    assert [(row[1], row[5], row[7]) for row in cells] == [
        ("opening", "", "0.00"),
        ("top_up", "10.50", "10.50"),
        ("manual_credit", "20.00", "30.50"),
        ("promotion", "5.00", "35.50"),
        ("usage", "-3.20", "32.30"),
        ("closing", "", "1071.80"),
    ]
    assert driver.find_element(By.ID, "verdict").text == "does not tie out"
    items = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#tie-out li")]
    assert items[0].endswith("closing 1071.80 USD; Moesif reports 1071.80 USD")
    [difference] = items[1:]
    assert re.search(
        r"^-1039\.50 USD: the ledger records 1050\.00 USD .*\(F-[0-9a-f]{16}\)$", difference
    )
    _shot(driver, "statement-html-demo", tmp_path)
