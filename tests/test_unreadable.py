"""Unreadable records as findings: flagged, never posted, in the matcher's columns."""

from __future__ import annotations

from datetime import UTC, datetime

from reconcile.domain.values import FINDING_COLUMNS, Unreadable
from reconcile.domain.vocab import UnreadableSource
from reconcile.unreadable import blocked_transaction_ids, unreadable_finding, unreadable_findings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STRIPE = Unreadable(
    UnreadableSource.STRIPE,
    "pi_1",
    "the currency 'xyz' is not an ISO 4217 code",
    company_hint="acme",
    customer_id="cus_1",
    created_at=T0,
    excerpt="{'id': 'pi_1'}",
    transaction_id="pi_1",
)
MOESIF = Unreadable(UnreadableSource.MOESIF, "row_9", "no time", company_hint="acme")


def test_a_stripe_object_is_a_flagged_finding_on_the_stripe_side() -> None:
    finding = unreadable_finding(STRIPE)
    assert list(finding) == FINDING_COLUMNS
    assert (finding["category"], finding["action"]) == ("unreadable", "flagged")
    assert (finding["stripe_object_id"], finding["moesif_id"]) == ("pi_1", None)
    assert finding["stripe_created_at"] == T0
    assert "ISO 4217" in str(finding["detail"])
    assert "pi_1" in str(finding["detail"])


def test_a_moesif_row_is_a_flagged_finding_on_the_moesif_side() -> None:
    finding = unreadable_finding(MOESIF)
    assert (finding["stripe_object_id"], finding["moesif_id"]) == (None, "row_9")
    assert finding["company_id"] == "acme"


def test_frames_and_blocked_ids() -> None:
    frame = unreadable_findings([STRIPE, MOESIF])
    assert list(frame.columns) == FINDING_COLUMNS
    assert len(frame) == 2
    assert list(unreadable_findings([]).columns) == FINDING_COLUMNS
    assert blocked_transaction_ids([STRIPE, MOESIF]) == {"pi_1"}
