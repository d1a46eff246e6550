"""The front page in headless Chromium: a drift chart per currency, the overdue findings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret
from reconcile.db.subscriptions import keep_currency
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.settings import ConsoleSettings
from tests.operator.conftest import NOW, ServedApp, add_run, add_state
from tests.operator.test_browser import TOKEN, _click_and_wait, _shot, browser  # noqa: F401


def _a_week_of_drift(session: Session) -> dict[str, str]:
    """Nightly runs over a week; USD owed and over-credited, EUR owed, a JPY finding closed."""
    keep_currency(session, "sub_blocked", "usd", NOW, "blocked", available_balance_minor=0)
    states = {
        "usd_over": add_state(
            session,
            category="amount_mismatch",
            company_id="initech",
            subscription_id="sub_initech",
            transaction_id="pi_initech",
            moesif_id="m-initech",
            stripe_amount_minor=1050,
            moesif_amount_minor=105000,
            delta_minor=-103950,
            owner="dana",
            status="assigned",
            first_seen_at=NOW - timedelta(days=4),  # high by amount: due 72 h on, a day ago
        ),
        "usd_owed": add_state(
            session,
            category="missing_in_moesif",
            company_id="blocked",
            subscription_id="sub_blocked",
            transaction_id="pi_blocked",
            moesif_id=None,
            stripe_amount_minor=25000,
            delta_minor=25000,
            first_seen_at=NOW - timedelta(days=3, hours=1),  # high by age: due in two days
        ),
        "eur_owed": add_state(
            session,
            category="missing_in_moesif",
            company_id="hooli",
            subscription_id="sub_hooli",
            transaction_id="pi_hooli",
            moesif_id=None,
            currency="eur",
            stripe_amount_minor=4000,
            delta_minor=4000,
            first_seen_at=NOW - timedelta(days=9),  # medium at a day old: due 5 days on
        ),
        "jpy_closed": add_state(
            session,
            category="missing_in_moesif",
            company_id="umbrella",
            subscription_id="sub_umbrella",
            transaction_id="pi_jpy",
            moesif_id=None,
            currency="jpy",
            stripe_amount_minor=5000,
            delta_minor=5000,
            status="closed",
            closed_at=NOW - timedelta(days=2),
            first_seen_at=NOW - timedelta(days=5, hours=1),
        ),
    }
    for day in range(7, -1, -1):
        ended = NOW - timedelta(days=day)
        open_then = sum(
            state.first_seen_at <= ended and (state.closed_at is None or state.closed_at > ended)
            for state in states.values()
        )  # the runs' counts agree with the findings open when each ended
        add_run(
            session,
            f"2026112{9 - day}T020000Z-run{day}",
            started_at=ended,
            exit_code=1 if open_then else 0,
            findings=open_then,
            flagged=open_then,
        )
    return {name: state.finding_id for name, state in states.items()}


def test_front_page_charts_each_currency_apart_and_lists_what_is_overdue(
    browser: object,  # noqa: F811
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    with sessions.begin() as session:
        ids = _a_week_of_drift(session)
    settings = ConsoleSettings(Secret(TOKEN), report_dir=tmp_path)
    with ServedApp(create_console_app(settings, sessions, lambda: NOW)) as served:
        driver.get(served.url + "/login")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        _click_and_wait(driver, driver.find_element(By.ID, "sign-in"))

        overdue = driver.find_elements(By.CSS_SELECTOR, "#overdue-findings tbody tr")
        listed = [row.find_element(By.TAG_NAME, "a").text for row in overdue]
        assert listed == [ids["eur_owed"], ids["usd_over"]]  # due 3 days ago, then 1 day ago
        assert "Overdue findings (2)" in driver.find_element(By.ID, "overdue").text
        assert "+40.00 EUR" in overdue[0].text
        assert "-1,039.50 USD" in overdue[1].text
        assert "dana" in overdue[1].text
        assert ids["usd_owed"] not in driver.find_element(By.ID, "overdue").text

        charts = driver.find_elements(By.CSS_SELECTOR, "#drift-charts .chart")
        assert [chart.get_attribute("id") for chart in charts] == [
            "drift-eur",
            "drift-jpy",
            "drift-usd",
            "count-chart",
        ]
        usd = driver.find_element(By.ID, "drift-usd")
        assert len(usd.find_elements(By.TAG_NAME, "polyline")) == 2
        assert len(usd.find_elements(By.CSS_SELECTOR, "line.zero")) == 1
        legend = usd.find_element(By.CLASS_NAME, "legend").text
        assert "owed to customers (under-credited): +250.00 USD" in legend
        assert "over-credited (Moesif holds too much): -1,039.50 USD" in legend
        eur = driver.find_element(By.ID, "drift-eur").text
        assert "+40.00 EUR" in eur
        assert "USD" not in eur
        jpy = driver.find_element(By.ID, "drift-jpy").find_element(By.CLASS_NAME, "legend").text
        assert "owed to customers (under-credited): 0 JPY" in jpy  # closed two days ago
        _shot(driver, "front-overdue", tmp_path)
        driver.set_window_size(1280, 1900)
        _shot(driver, "front-drift-charts", tmp_path)
