"""Whether a movement may be posted, and where: the one rule, decided without a database or HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import reconcile.rules.destination
from reconcile.domain.vocab import Category, Source
from reconcile.rules.destination import (
    UNCHECKED,
    Movement,
    Outcome,
    Placed,
    Subscription,
    destination,
)

USD_SUB = Subscription(currency="usd", company_id="co_1")


def _movement(**changes: object) -> Movement:
    values: dict[str, object] = {
        "currency": "usd",
        "company_id": "co_1",
        "subscription_id": "sub_1",
        "transaction_id": "pi_1",
        "source": Source.TOPUP,
    }
    values.update(changes)
    return Movement(**values)  # type: ignore[arg-type]


def test_a_mapped_movement_in_the_subscriptions_currency_is_posted() -> None:
    assert destination(_movement(), USD_SUB).outcome is Outcome.POST
    assert destination(_movement(currency="USD"), USD_SUB).posts


def test_a_payment_in_another_currency_is_a_currency_mismatch() -> None:
    verdict = destination(_movement(currency="jpy"), USD_SUB)
    assert (verdict.outcome, verdict.category) == (Outcome.REFUSE, Category.CURRENCY_MISMATCH)
    assert verdict.reason == "payment in JPY, subscription sub_1 in USD; not posted"


def test_an_unmapped_movement_is_an_unmapped_customer_with_its_reason() -> None:
    verdict = destination(
        _movement(subscription_id=None, unmapped_reason="2 Stripe subscriptions"), UNCHECKED
    )
    assert (verdict.category, verdict.reason) == (
        Category.UNMAPPED_CUSTOMER,
        "2 Stripe subscriptions",
    )
    assert destination(_movement(company_id=None), USD_SUB).reason == (
        "no single Moesif company/subscription"
    )


def test_a_subscription_moesif_does_not_have_is_an_unmapped_customer() -> None:
    verdict = destination(_movement(), None)
    assert (verdict.category, verdict.reason) == (
        Category.UNMAPPED_CUSTOMER,
        "subscription sub_1 not found in Moesif",
    )


def test_another_companys_subscription_is_never_credited() -> None:
    verdict = destination(_movement(), Subscription(currency="usd", company_id="co_2"))
    assert (verdict.outcome, verdict.category) == (Outcome.REFUSE, Category.UNMAPPED_CUSTOMER)
    assert "belongs to company co_2, not to company co_1" in verdict.reason


def test_a_row_carrying_the_movement_elsewhere_holds_it_as_misapplied() -> None:
    elsewhere = Placed("row_9", "co_2", "sub_2")
    verdict = destination(_movement(), USD_SUB, carried_by=(elsewhere,))
    assert (verdict.category, verdict.row) == (Category.MISAPPLIED, elsewhere)
    assert verdict.reason.startswith("ledger row row_9 carries pi_1 on company co_2 / subscription")
    here = Placed("row_1", "co_1", "sub_1")
    assert destination(_movement(), USD_SUB, carried_by=(here, elsewhere)).category == (
        Category.MISAPPLIED
    )


def test_a_row_carrying_the_movement_on_its_own_subscription_means_it_is_held_never_posted() -> (
    None
):
    # Issue 15: a row an older integration wrote, seen by a nightly run, was credited again
    # when the payment's webhook arrived (the rule said post: only rows elsewhere counted).
    here = Placed("row_1", "co_1", "sub_1")
    verdict = destination(_movement(), USD_SUB, carried_by=(here,))
    assert (verdict.outcome, verdict.category, verdict.posts) == (Outcome.HELD, None, False)
    assert destination(_movement(), USD_SUB, carried_by=()).posts


def test_unknown_facts_are_not_checked_and_other_kinds_are_left() -> None:
    assert destination(_movement(currency="jpy"), UNCHECKED).posts
    assert destination(_movement(currency="jpy"), Subscription(company_id="co_1")).posts
    left = destination(_movement(source=Source.REFUND), USD_SUB, kinds={Source.TOPUP})
    assert (left.outcome, left.category) == (Outcome.LEAVE, None)


@pytest.mark.parametrize(
    ("movement", "subscription", "category"),
    [
        # The mapping is checked before Moesif's answer, which is checked before the currency.
        (_movement(subscription_id=None, currency="jpy"), None, Category.UNMAPPED_CUSTOMER),
        (_movement(currency="jpy"), None, Category.UNMAPPED_CUSTOMER),
        (
            _movement(currency="jpy"),
            Subscription(currency="usd", company_id="co_2"),
            Category.UNMAPPED_CUSTOMER,
        ),
    ],
)
def test_the_first_failing_check_names_the_category(
    movement: Movement, subscription: Subscription | None, category: Category
) -> None:
    carried = (Placed("row_9", "co_2", "sub_2"),)
    assert destination(movement, subscription, carried_by=carried).category == category


def test_the_rule_imports_no_io() -> None:
    source = Path(reconcile.rules.destination.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    assert imported <= {
        "__future__",
        "collections.abc",
        "dataclasses",
        "enum",
        "reconcile.domain.vocab",
    }
