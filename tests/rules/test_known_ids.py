"""Which movement an id-less ledger row is known by: from its description, or remembered."""

from __future__ import annotations

import pytest

from reconcile.domain.ids import posted_transaction_id, posting_description
from reconcile.rules.known_ids import known_id, needs_memory


def test_a_description_the_job_wrote_is_read_back_by_the_one_parser() -> None:
    text = posting_description("credit", "pi_1", "pi_1", "run 20261124T020000Z-3f9a1c")
    assert text == "reconcile: credit pi_1 for Stripe pi_1 (run 20261124T020000Z-3f9a1c)"
    assert posted_transaction_id(text) == "pi_1"
    assert posted_transaction_id(posting_description("debit", "re_2", "re_2", "r")) == "re_2"


@pytest.mark.parametrize(
    "text", [None, "", "top-up pi_1", "reconcile: usage pi_1 for Stripe pi_1", " reconcile: credit"]
)
def test_other_descriptions_name_no_posting(text: str | None) -> None:
    assert posted_transaction_id(text) is None


def test_a_row_with_a_stripe_id_keeps_it() -> None:
    own = posting_description("credit", "pi_9", "pi_9", "r")
    assert known_id("pi_1", own, "m1", {"m1": "pi_2"}) == "pi_1"
    assert not needs_memory("pi_1", None)


def test_a_row_the_job_posted_is_known_by_its_description_before_any_memory() -> None:
    own = posting_description("credit", "pi_9", "pi_9", "r")
    assert known_id(None, own, "m1", {"m1": "pi_2"}) == "pi_9"
    assert known_id("wh_1", own, "m1", {}) == "pi_9"
    assert not needs_memory(None, own)


def test_a_row_matched_by_amount_before_keeps_its_movement() -> None:
    assert needs_memory(None, "manual top-up")
    assert known_id(None, "manual top-up", "m1", {"m1": "pi_2"}) == "pi_2"


def test_a_row_nothing_names_keeps_what_it_has() -> None:
    assert known_id(None, None, "m1", {"m2": "pi_2"}) is None
    assert known_id("wh_1", None, "m1", {}) == "wh_1"
