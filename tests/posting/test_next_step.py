"""The posting state machine and its read-back rules, as pure functions: no database, no HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconcile.domain.values import Entry, LedgerRow
from reconcile.domain.vocab import EntryType, PostingStatus
from reconcile.posting.next_step import ReadBack, Step, applied, next_step, reports_settled
from reconcile.posting.read_back import MARGIN, read_back_of, same_movement

TID = "pi_1"
NOT_FOUND = ReadBack(found_by_id=False, settled=True)
"""Absent from a read-back made once the reports must list the last send's row."""
NOT_LISTED_YET = ReadBack(found_by_id=False)
"""Absent from a read-back made sooner: the reports may not list the row yet."""
FOUND = ReadBack(found_by_id=True)


def _step(
    status: PostingStatus | None, read_back: ReadBack | None = None, *, just_sent: bool = False
) -> Step:
    return next_step(status, read_back, transaction_id=TID, just_sent=just_sent)


def test_a_posting_never_sent_is_first_looked_for_in_moesif() -> None:
    assert _step(None) is Step.READ_FIRST


@pytest.mark.parametrize("read_back", [None, NOT_FOUND, FOUND])
def test_a_confirmed_posting_is_never_sent_again(read_back: ReadBack | None) -> None:
    assert _step(PostingStatus.CONFIRMED, read_back) is Step.SKIP_CONFIRMED
    assert _step(PostingStatus.CONFIRMED, read_back, just_sent=True) is Step.SKIP_CONFIRMED


@pytest.mark.parametrize(
    "status", [PostingStatus.INTENT, PostingStatus.UNKNOWN, PostingStatus.FAILED]
)
def test_anything_that_may_have_been_sent_is_read_back_first(status: PostingStatus) -> None:
    assert _step(status) is Step.READ_BACK


@pytest.mark.parametrize(
    "status", [PostingStatus.INTENT, PostingStatus.UNKNOWN, PostingStatus.FAILED]
)
def test_found_on_read_back_is_confirmed_without_sending(status: PostingStatus) -> None:
    assert _step(status, FOUND) is Step.CONFIRM
    assert _step(status, FOUND, just_sent=True) is Step.CONFIRM


@pytest.mark.parametrize(
    ("status", "step"),
    [
        (PostingStatus.INTENT, Step.SEND_AS_RECORDED),
        (PostingStatus.UNKNOWN, Step.SEND_AS_RECORDED),
        (PostingStatus.FAILED, Step.SEND),
    ],
)
def test_not_found_is_resent_as_first_sent_unless_moesif_surely_never_applied_it(
    status: PostingStatus, step: Step
) -> None:
    assert _step(status, NOT_FOUND) is step


def test_a_lost_answer_not_yet_in_the_ledger_is_left_unknown_not_resent() -> None:
    assert _step(PostingStatus.UNKNOWN, NOT_FOUND, just_sent=True) is Step.LEAVE_UNKNOWN
    assert _step(PostingStatus.UNKNOWN, NOT_LISTED_YET, just_sent=True) is Step.LEAVE_UNKNOWN


@pytest.mark.parametrize("status", [PostingStatus.INTENT, PostingStatus.UNKNOWN])
def test_what_may_have_been_applied_waits_for_the_reports_before_absence_counts(
    status: PostingStatus,
) -> None:
    assert _step(status, NOT_LISTED_YET) is Step.WAIT_FOR_REPORTS
    assert _step(status, NOT_FOUND) is Step.SEND_AS_RECORDED


def test_a_read_back_proves_nothing_absent_unless_it_says_it_is_settled() -> None:
    assert ReadBack(found_by_id=False).settled is False


def test_a_failed_posting_moesif_surely_never_applied_needs_no_wait() -> None:
    assert _step(PostingStatus.FAILED, NOT_LISTED_YET) is Step.SEND


def test_waiting_guards_only_absence_a_row_the_reports_list_confirms_at_once() -> None:
    listed = ReadBack(found_by_id=False, anonymous=("top-up",))
    assert _step(PostingStatus.UNKNOWN, listed) is Step.CONFIRM


@pytest.mark.parametrize(
    ("read_after", "lag", "settled"),
    [
        (timedelta(0), timedelta(minutes=15), False),
        (timedelta(minutes=15) - timedelta(microseconds=1), timedelta(minutes=15), False),
        (timedelta(minutes=15), timedelta(minutes=15), True),
        (timedelta(hours=3), timedelta(minutes=15), True),
        (timedelta(0), timedelta(0), True),
        (-timedelta(seconds=1), timedelta(0), False),
    ],
)
def test_reports_are_settled_from_the_report_lag_after_the_last_send(
    read_after: timedelta, lag: timedelta, settled: bool
) -> None:
    assert reports_settled(NOW, NOW + read_after, lag) is settled


@pytest.mark.parametrize(
    ("anonymous", "twins", "expected"),
    [
        ((), 0, False),
        (("top-up",), 0, True),
        (("top-up",), 1, False),
        (("top-up", ""), 1, True),
        (("top-up", ""), 2, False),
        (("", "", ""), 2, True),
    ],
)
def test_more_anonymous_rows_than_confirmed_twins_means_ours_arrived(
    anonymous: tuple[str, ...], twins: int, expected: bool
) -> None:
    read_back = ReadBack(found_by_id=False, anonymous=anonymous, confirmed_twins=twins)
    assert applied(read_back, TID) is expected
    assert (_step(PostingStatus.UNKNOWN, read_back) is Step.CONFIRM) is expected


def test_a_description_naming_this_posting_says_it_arrived_whatever_the_twins() -> None:
    read_back = ReadBack(
        found_by_id=False, anonymous=("reconcile: credit pi_1 for Stripe pi_1",), confirmed_twins=5
    )
    assert applied(read_back, TID)


def test_rows_naming_another_movement_are_someone_elses() -> None:
    read_back = ReadBack(
        found_by_id=False,
        anonymous=("reconcile: credit pi_2 for Stripe pi_2", "refund re_9", "dispute txn_4"),
        settled=True,
    )
    assert not applied(read_back, TID)
    assert _step(PostingStatus.INTENT, read_back) is Step.SEND_AS_RECORDED


NOW = datetime(2026, 11, 20, 2, tzinfo=UTC)
ENTRY = Entry(TID, "co_1", "sub_1", "credit", 1050, "usd", "top-up")


def _row(
    transaction_id: str | None = None,
    *,
    subscription_id: str = "sub_1",
    amount_minor: int = 1050,
    entry_type: EntryType = EntryType.CREDIT,
    created_at: datetime = NOW,
    description: str | None = None,
) -> LedgerRow:
    return LedgerRow(
        moesif_id=f"row_{transaction_id}_{amount_minor}_{subscription_id}",
        transaction_id=transaction_id,
        entry_type=entry_type,
        amount_minor=amount_minor,
        amount_raw=str(amount_minor),
        currency="usd",
        company_id="co_1",
        subscription_id=subscription_id,
        created_at=created_at,
        description=description,
    )


def test_a_row_with_the_id_is_found_by_id() -> None:
    assert read_back_of([_row("pi_other"), _row(TID)], ENTRY, NOW) == FOUND


def test_only_anonymous_rows_of_the_same_place_type_amount_and_time_count() -> None:
    rows = [
        _row(description="by hand"),
        _row(),
        _row("pi_other"),
        _row(subscription_id="sub_2"),
        _row(amount_minor=1051),
        _row(entry_type=EntryType.DEBIT),
        _row(created_at=NOW - MARGIN - timedelta(seconds=1)),
    ]
    assert read_back_of(rows, ENTRY, NOW) == ReadBack(found_by_id=False, anonymous=("by hand", ""))
    assert same_movement(_row(created_at=NOW - MARGIN), ENTRY, NOW)
