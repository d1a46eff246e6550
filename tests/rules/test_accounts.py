"""STRIPE_ACCOUNTS read and checked; the exit code of many accounts' runs."""

from __future__ import annotations

import pytest

from reconcile.config import Settings
from reconcile.errors import ConfigError
from reconcile.rules.accounts import ALL, chosen, named, parse_accounts, worst_exit


def test_accounts_are_read_in_order_each_once() -> None:
    assert parse_accounts(" acct_1, acct_2 ,acct_1,") == ("acct_1", "acct_2")
    assert parse_accounts("") == ()
    assert parse_accounts("ALL") == (ALL,)


@pytest.mark.parametrize("text", ["cus_1", "acct_", "all,acct_1", "acct_1;drop"])
def test_what_is_not_an_account_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_accounts(text)


def test_all_takes_every_listed_account() -> None:
    assert chosen((ALL,), ["acct_b", "acct_a", "acct_b"]) == ("acct_b", "acct_a")
    assert chosen(("acct_x",), ["acct_b"]) == ("acct_x",)


def test_the_most_serious_exit_code_wins() -> None:
    assert worst_exit([0, 1, 0]) == 1
    assert worst_exit([1, 75, 4]) == 4
    assert worst_exit([4, 3, 2]) == 3
    assert worst_exit([]) == 0


def test_stripe_accounts_is_a_setting() -> None:
    base = {"STRIPE_API_KEY": "sk_test_x", "MOESIF_MANAGEMENT_TOKEN": "t"}
    settings = Settings.from_env({**base, "STRIPE_ACCOUNTS": "acct_1,acct_2"}, dotenv=None)
    assert settings.stripe_accounts == ("acct_1", "acct_2")
    with pytest.raises(ConfigError, match="STRIPE_ACCOUNTS"):
        Settings.from_env({**base, "STRIPE_ACCOUNTS": "nope"}, dotenv=None)


def test_named_shows_a_few_accounts_whole_and_counts_the_rest() -> None:
    assert named(["acct_1", "acct_2"]) == "acct_1,acct_2"
    assert named([f"acct_{n}" for n in range(7)]) == "acct_0,acct_1,acct_2,acct_3,acct_4 and 2 more"
    assert named([]) == ""
