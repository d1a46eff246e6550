"""The faults the mutation check switches on, one at a time, and the tests that must catch each.

Each mutant replaces one exact snippet of one source file in a copy of the repository. The
snippet must occur exactly once: code that moves or changes must update its mutant here, or the
check fails (a fault nobody can switch on is no check). A named test is a node id; one without
parameters names every parametrisation, and at least one of them must fail.
"""

from __future__ import annotations

from dataclasses import dataclass

SQLITE = "[sqlite]"
"""The SQLite parametrisation of a test over both databases (the faster one)."""


@dataclass(frozen=True)
class Mutant:
    """One fault: where it goes, what it breaks, and the tests that must fail with it."""

    name: str
    breaks: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="post-twice",
        breaks="every movement is posted to Moesif twice (the engine's send)",
        path="reconcile/posting/engine.py",
        find=("        try:\n            self._moesif.post_balance_transaction(\n"),
        replace=(
            "        try:\n"
            "          for _twice in range(2):\n"
            "            self._moesif.post_balance_transaction(\n"
        ),
        tests=(
            "tests/test_posting.py::test_a_posting_is_sent_once_and_recorded_confirmed" + SQLITE,
            "tests/serve/test_topup.py::test_a_top_up_charges_once_and_credits_moesif_once"
            + SQLITE,
        ),
    ),
    Mutant(
        name="cut-off-read-complete",
        breaks="a Moesif answer at the read cap is taken as complete (never narrowed)",
        path="reconcile/rules/absence.py",
        find="    return answer_rows >= read_cap\n",
        replace="    return False\n",
        tests=(
            "tests/rules/test_absence.py::test_an_answer_at_the_cap_or_over_it_is_cut_off",
            "tests/e2e/test_gone_rows.py::"
            "test_an_answer_at_the_read_cap_is_narrowed_until_every_row_is_read" + SQLITE,
        ),
    ),
    Mutant(
        name="skip-misapplied-rule",
        breaks="the posting rule ignores a ledger row carrying the movement elsewhere",
        path="reconcile/rules/destination.py",
        find="    for row in carried_by:\n",
        replace="    for row in ():\n",
        tests=(
            "tests/rules/test_destination.py::"
            "test_a_row_carrying_the_movement_elsewhere_holds_it_as_misapplied",
            "tests/serve/test_live_rules.py::"
            "test_a_webhook_payment_the_rule_refuses_is_not_credited_and_is_an_open_finding_at_once"
            "[sqlite-row_already_on_another_subscription]",
        ),
    ),
    Mutant(
        name="skip-misapplied-finding",
        breaks="the nightly match reports no misapplied row",
        path="reconcile/matching.py",
        find="            _misapplied(entries, rows, misplaced),\n",
        replace="",
        tests=(
            "tests/e2e/test_lifecycle.py::"
            "test_the_readme_fix_of_a_misapplied_credit_is_reported_resolved_with_its_amounts"
            + SQLITE,
        ),
    ),
    Mutant(
        name="skip-live-currency-rule",
        breaks="the live path (webhook, /top-up) does not check the subscription's currency",
        path="reconcile/serve/destinations.py",
        find="Subscription(known.currency, known.company_id)",
        replace="Subscription(None, known.company_id)",
        tests=(
            "tests/serve/test_live_rules.py::"
            "test_a_webhook_payment_the_rule_refuses_is_not_credited_and_is_an_open_finding_at_once"
            "[sqlite-eur_on_usd]",
            "tests/serve/test_live_rules.py::"
            "test_a_top_up_the_rule_refuses_is_409_and_nothing_is_charged[sqlite-eur_on_usd]",
        ),
    ),
    Mutant(
        name="no-read-back-before-repost",
        breaks="a posting that may have been sent is sent again without reading the ledger back",
        path="reconcile/posting/engine.py",
        find=(
            "            read_back = self._read_back(posting)\n"
            "            step = next_step(status, read_back, transaction_id=entry.transaction_id)\n"
        ),
        replace=(
            "            read_back = ReadBack(found_by_id=False)\n"
            "            step = next_step(status, read_back, transaction_id=entry.transaction_id)\n"
        ),
        tests=(
            "tests/test_posting.py::"
            "test_an_unfinished_posting_moesif_already_holds_is_confirmed_not_resent[sqlite-pi_1]",
            "tests/e2e/test_crash.py::test_crash_during_the_read_back_then_rerun_posts_once"
            + SQLITE,
        ),
    ),
    Mutant(
        name="no-first-read",
        breaks="a posting never sent is sent without looking for its id in Moesif first",
        path="reconcile/posting/next_step.py",
        find="    if status is None:\n        return Step.READ_FIRST\n",
        replace="    if status is None:\n        return Step.SEND\n",
        tests=(
            "tests/posting/test_engine.py::"
            "test_a_row_someone_else_wrote_under_the_id_is_held_and_nothing_is_sent" + SQLITE,
            "tests/simulation/test_interleaving.py::"
            "test_a_row_written_elsewhere_since_the_last_nightly_run_is_not_credited_again",
        ),
    ),
    Mutant(
        name="gone-without-targeted-read",
        breaks="a row one read lacked is marked gone though its targeted read returned it",
        path="reconcile/rules/absence.py",
        find="if s.moesif_id not in returned_again}",
        replace="if s.moesif_id}",
        tests=(
            "tests/rules/test_absence.py::"
            "test_a_row_is_concluded_gone_only_when_the_targeted_read_lacks_it_too",
            "tests/e2e/test_gone_rows.py::"
            "test_a_read_that_omits_a_held_row_once_posts_nothing_again" + SQLITE,
        ),
    ),
    Mutant(
        name="topup-charges-refused",
        breaks="/top-up charges the card although the posting rule refuses the top-up",
        path="reconcile/serve/topup.py",
        find="        if not verdict.posts:\n",
        replace="        if False:\n",
        tests=(
            "tests/serve/test_live_rules.py::"
            "test_a_top_up_the_rule_refuses_is_409_and_nothing_is_charged[sqlite-eur_on_usd]",
            "tests/serve/test_topup.py::test_an_unmapped_customer_is_409_and_never_charged"
            + SQLITE,
        ),
    ),
    Mutant(
        name="ignored-findings-count",
        breaks="a finding an operator ignored is reopened and counts for exit 1 again",
        path="reconcile/rules/lifecycle.py",
        find="    if status == IGNORED:\n",
        replace="    if False:\n",
        tests=(
            "tests/rules/test_lifecycle.py::"
            "test_an_ignored_finding_found_again_stays_ignored_and_silent",
            "tests/e2e/test_lifecycle.py::test_an_ignored_finding_no_longer_counts_for_exit_1"
            + SQLITE,
        ),
    ),
)
