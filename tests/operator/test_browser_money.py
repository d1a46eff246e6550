"""The console's money in a real headless Chromium: the headline, a finding's sides, balances."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret
from reconcile.db.subscriptions import keep_currency
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.settings import ConsoleSettings
from tests.operator.conftest import NOW, ServedApp, add_initech_records, add_state
from tests.operator.test_browser import TOKEN, _click_and_wait, _shot, browser  # noqa: F401


def test_money_reads_right_in_a_browser(
    browser: object,  # noqa: F811
    sessions: sessionmaker[Session],
    tmp_path: Path,
    seeded: dict[str, str],
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    with sessions.begin() as session:
        keep_currency(session, "sub_acme", "usd", NOW, "acme", available_balance_minor=0)
        keep_currency(session, "sub_hooli", "usd", NOW, "hooli")
        mismatch = add_state(
            session,
            category="amount_mismatch",
            company_id="initech",
            subscription_id="sub_initech",
            transaction_id="pi_initech",
            moesif_id="m-initech",
            stripe_amount_minor=1050,
            moesif_amount_minor=105000,
            delta_minor=-103950,
        ).finding_id
        add_initech_records(session)
    (tmp_path / "balances-20261201T020000Z-cccccc.csv").write_text(
        "company_id,subscription_id,currency,stripe_net,moesif_net,delta,current_balance,"
        "pending_activity,available_balance,open_findings,blocked,owed,as_of,"
        "subscription_currency\n"
        "initech,sub_initech,usd,10.50,1050.00,'-1039.50,1050.00,0,1050.00,1,,over-credited,"
        "2026-12-01T01:58:12Z,usd\n"
        "umbrella,sub_umbrella,jpy,5000,0,5000,10,0,10,1,,owed,2026-11-30T23:10:00Z,jpy\n"
        "acme,sub_acme,usd,70.00,45.00,25.00,0.00,0.00,0.00,1,blocked,owed,"
        "2026-12-01T01:59:40Z,usd\n"
        "hooli,sub_hooli,eur,30.00,0,30.00,12.00,0,12.00,1,,owed,2026-12-01T01:20:00Z,usd\n",
        encoding="utf-8",
    )
    settings = ConsoleSettings(Secret(TOKEN), report_dir=tmp_path)
    with ServedApp(create_console_app(settings, sessions, lambda: NOW)) as served:
        driver.get(served.url + "/login")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        _click_and_wait(driver, driver.find_element(By.ID, "sign-in"))
        totals = [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, "#totals tbody tr")
        ]
        assert totals == [
            ["JPY", "+5,000 JPY", "0 JPY", "0 JPY", "1 blocked"],
            ["USD", "+25.00 USD", "-1,059.50 USD", "0.00 USD", "1 blocked"],
        ]
        _shot(driver, "money-headline", tmp_path)

        driver.get(f"{served.url}/findings/{mismatch}")
        assert "-1,039.50 USD" in driver.find_element(By.ID, "delta").text
        assert driver.find_element(By.ID, "stripe-amount").text == "10.50 USD"
        assert driver.find_element(By.ID, "moesif-amount").text == "1,050.00 USD"
        sides = [card.text for card in driver.find_elements(By.CSS_SELECTOR, ".side .card")]
        assert "10.50 USD" in sides[0]  # the Stripe movement itself
        assert "1,050.00 USD" in sides[1]  # and the ledger row
        _shot(driver, "money-finding", tmp_path)

        driver.set_window_size(1720, 700)  # wide enough for every column, as_of included
        driver.get(served.url + "/balances")
        rows = driver.find_elements(By.CSS_SELECTOR, "#balances tbody tr")
        first = [cell.text for cell in rows[0].find_elements(By.TAG_NAME, "td")]
        assert first[:5] == ["acme", "sub_acme", "usd", "blocked", "owed"]
        assert first[-2] == "2026-12-01T01:59:40Z"  # as_of, before the statements link
        marks = driver.find_elements(By.CSS_SELECTOR, "#balances td.owed")
        assert [cell.text for cell in marks] == ["owed", "owed", "over-credited"]
        apart = driver.find_element(By.ID, "currency_mismatch").text
        assert "sub_hooli" in apart
        assert "12.00" not in apart
        _shot(driver, "money-balances", tmp_path)
