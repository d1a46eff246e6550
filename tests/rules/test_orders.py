"""Turning missing movements into orders: skip unreadable and confirmed ids; details for each."""

from __future__ import annotations

from dataclasses import replace

from reconcile.domain.values import Entry
from reconcile.domain.vocab import Action
from reconcile.posting.outcome import Outcome, Result
from reconcile.rules.orders import UNREADABLE, Decision, Missing, after_sending, decide

MISSING = Missing(
    transaction_id="re_1",
    action=Action.WOULD_POST,
    company_id="co_1",
    subscription_id="sub_1",
    entry_type="debit",
    amount_minor=1234,
    currency="usd",
    stripe_object_id="re_1",
)


def _decide(finding: Missing = MISSING, **given: object) -> Decision:
    options: dict[str, object] = {"unreadable": frozenset(), "confirmed_by": {}, "run_id": "r9"}
    options.update(given)
    return decide(finding, **options)  # type: ignore[arg-type]


def test_a_missing_movement_becomes_an_order_naming_its_id_in_the_description() -> None:
    assert _decide() == Decision(
        Action.WOULD_POST,
        None,
        Entry(
            transaction_id="re_1",
            company_id="co_1",
            subscription_id="sub_1",
            entry_type="debit",
            amount_minor=1234,
            currency="usd",
            description="reconcile: debit re_1 for Stripe re_1 (run r9)",
        ),
    )


def test_an_id_moesif_holds_in_an_unreadable_row_is_flagged_not_posted() -> None:
    assert _decide(unreadable={"re_1"}, confirmed_by={"re_1": "run r1"}) == Decision(
        Action.FLAGGED, UNREADABLE
    )


def test_a_posting_an_earlier_run_confirmed_is_flagged_not_sent_again() -> None:
    decision = _decide(confirmed_by={"re_1": "run r1"})
    assert decision.action == Action.FLAGGED
    assert decision.order is None
    assert decision.detail is not None
    assert decision.detail.startswith("posted by run r1 and confirmed by Moesif")


def test_a_finding_the_matcher_did_not_mark_for_posting_keeps_its_action() -> None:
    assert _decide(replace(MISSING, action=Action.FLAGGED)) == Decision(Action.FLAGGED, None)


def test_after_sending_each_order_takes_its_outcome_and_the_unsent_fail() -> None:
    outcomes = [
        Outcome("pi_1", Result.POSTED, ""),
        Outcome("pi_2", Result.REFUSED, "Moesif refused it"),
    ]
    assert after_sending(outcomes, 2) == [
        Decision(Action.POSTED, None),
        Decision(Action.POST_FAILED, "Moesif refused it"),
    ]
    assert after_sending(outcomes[:1], 3, "Moesif is down") == [
        Decision(Action.POSTED, None),
        Decision(Action.POST_FAILED, "not posted: Moesif is down"),
        Decision(Action.POST_FAILED, "not posted: Moesif is down"),
    ]
