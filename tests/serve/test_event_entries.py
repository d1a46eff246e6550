"""Which objects each Stripe event names, decided without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

from reconcile.domain.values import ExpectedEntry
from reconcile.domain.vocab import Category, EntryType, Source
from reconcile.rules.destination import UNCHECKED, Subscription, destination
from reconcile.serve.destinations import movement_of
from reconcile.serve.event_entries import EventPlan, orders_of, plan_event


def _event(event_type: str, obj: dict[str, object]) -> dict[str, object]:
    return {"id": "evt_1", "object": "event", "type": event_type, "data": {"object": obj}}


def test_a_succeeded_payment_intent_names_itself_as_a_top_up() -> None:
    plan = plan_event(
        _event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    )
    assert plan == EventPlan(handled=True, object_ids=("pi_1",), sources=frozenset({Source.TOPUP}))


def test_a_refunded_charge_asks_for_its_refunds() -> None:
    plan = plan_event(_event("charge.refunded", {"id": "ch_1", "object": "charge"}))
    assert plan.refunds_of_charge == "ch_1"
    assert plan.sources == frozenset({Source.REFUND})


def test_refund_events_name_a_succeeded_refund_and_skip_a_pending_one() -> None:
    for event_type in ("refund.created", "refund.updated", "charge.refund.updated"):
        plan = plan_event(_event(event_type, {"id": "re_1", "status": "succeeded"}))
        assert plan.object_ids == ("re_1",)
    pending = plan_event(_event("refund.created", {"id": "re_1", "status": "pending"}))
    assert pending.handled
    assert pending.object_ids == ()
    assert "not final" in pending.note


def test_a_failed_refund_names_the_refund_and_its_failure_transaction() -> None:
    plan = plan_event(
        _event(
            "refund.updated",
            {"id": "re_1", "status": "failed", "failure_balance_transaction": "txn_9"},
        )
    )
    assert plan.object_ids == ("re_1", "txn_9")
    assert plan.transactions_of is None
    assert plan.sources == frozenset({Source.REFUND, Source.REFUND_FAILURE})
    unnamed = plan_event(_event("refund.failed", {"id": "re_2", "status": "failed"}))
    assert unnamed.object_ids == ("re_2",)
    assert unnamed.transactions_of == "re_2"


def test_dispute_events_pick_the_balance_transaction_of_their_kind() -> None:
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "balance_transactions": [
            {"id": "txn_w", "reporting_category": "dispute"},
            {"id": "txn_r", "reporting_category": "dispute_reversal"},
            "txn_unexpanded",
        ],
    }
    withdrawn = plan_event(_event("charge.dispute.funds_withdrawn", dispute))
    reinstated = plan_event(_event("charge.dispute.funds_reinstated", dispute))
    assert withdrawn.object_ids == ("txn_w", "txn_unexpanded")
    assert withdrawn.sources == frozenset({Source.DISPUTE})
    assert reinstated.object_ids == ("txn_r", "txn_unexpanded")
    assert reinstated.sources == frozenset({Source.DISPUTE_REVERSAL})


def test_other_event_types_are_not_handled() -> None:
    plan = plan_event(_event("customer.created", {"id": "cus_1"}))
    assert not plan.handled
    assert plan.object_ids == ()


def _entry(transaction_id: str, source: Source, company: str | None) -> ExpectedEntry:
    return ExpectedEntry(
        transaction_id=transaction_id,
        source=source,
        entry_type=EntryType.DEBIT if source == Source.REFUND else EntryType.CREDIT,
        amount_minor=1050,
        currency="usd",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        stripe_object_id=transaction_id,
        topup_id="pi_1",
        stripe_customer_id="cus_1",
        company_id=company,
        subscription_id="sub_1" if company else None,
        unmapped_reason=None if company else "no subscription",
    )


def test_orders_keep_the_planned_kinds_and_never_guess_an_unmapped_entry() -> None:
    plan = EventPlan(handled=True, sources=frozenset({Source.REFUND}))
    entries = [
        _entry("re_1", Source.REFUND, "co_1"),
        _entry("txn_x", Source.DISPUTE_REVERSAL, "co_1"),
        _entry("re_2", Source.REFUND, None),
    ]
    found = orders_of(
        [
            (entry, destination(movement_of(entry), UNCHECKED, kinds=plan.sources))
            for entry in entries
        ],
        "webhook:evt_1",
    )
    assert [(o.transaction_id, o.entry_type, o.amount_minor) for o in found.orders] == [
        ("re_1", "debit", 1050)
    ]
    assert found.orders[0].description.startswith("reconcile: debit re_1 for Stripe ")
    assert found.unmapped == ("re_2: no subscription",)
    assert [entry.transaction_id for entry, _verdict in found.refused] == ["re_2"]


def test_an_entry_the_rule_refuses_is_no_order() -> None:
    entry = _entry("re_1", Source.REFUND, "co_1")
    verdict = destination(movement_of(entry), Subscription(currency="eur", company_id="co_1"))
    found = orders_of([(entry, verdict)], "webhook:evt_1")
    assert found.orders == ()
    assert found.unmapped == ()
    assert [(e.transaction_id, v.category) for e, v in found.refused] == [
        ("re_1", Category.CURRENCY_MISMATCH)
    ]
