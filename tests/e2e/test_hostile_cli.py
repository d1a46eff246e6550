"""Hostile input through the command line: each row a setup and everything its run must show.

Every case also asserts no traceback, one error line where the run fails, exactly the postings
expected (each once), formulas neutralised in the CSV, no run left ``running``, and that no
canary secret reaches stdout, stderr (the log), the CSV or any table of the database.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from reconcile.cli import main
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.domain.times import to_iso
from reconcile.lock import run_lock
from tests.e2e.hostile import (
    DB_PASSWORD,
    Case,
    Hostile,
    Ran,
    Scene,
    check,
    hostile_world,
    run,
    run_statuses,
)
from tests.e2e.test_robustness import POST_PATH, _on_first_post

# -- building blocks ---------------------------------------------------------------------------


def _customer(scene: Scene, company: str = "acme", subscription: str = "sub_acme") -> str:
    scene.moesif.add_subscription(subscription, company)
    return scene.stripe.add_customer(
        metadata={"moesif_company_id": company, "moesif_subscription_id": subscription}
    )


def _paying(scene: Scene, amount: int = 2500, company: str = "acme") -> str:
    """A customer whose top-up is missing in Moesif and must be posted once."""
    payment = scene.stripe.add_payment_intent(
        _customer(scene, company, f"sub_{company}"), amount, created=scene.ago(days=1)
    )
    scene.expected_posts.add(payment)
    return payment


def _bystander(scene: Scene) -> str:
    """Another customer's missing top-up, which must be posted whatever else goes wrong."""
    return _paying(scene, 700, "bystander")


def _env(name: str, value: str) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _paying(scene)
        scene.expected_posts.clear()
        scene.setenv(name, value)

    return setup


def _argv(*argv: str) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _paying(scene)
        scene.expected_posts.clear()
        scene.argv = list(argv)

    return setup


# -- 1. misapplied credits ---------------------------------------------------------------------


def _misapplied(other_company: bool) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        payment = _paying(scene)
        scene.expected_posts.clear()
        company, subscription = ("globex", "sub_globex") if other_company else ("acme", "sub_2")
        scene.moesif.add_subscription(subscription, company)
        scene.moesif.add_row(
            company,
            subscription,
            "credit",
            Decimal("25.00"),
            scene.ago(hours=20),
            transaction_id=payment,
        )
        _bystander(scene)

        def detail_names_both(ran: Ran) -> None:
            [row] = [row for row in ran.rows if row["category"] == "misapplied"]
            assert subscription in row["detail"]
            assert "sub_acme" in row["detail"]

        scene.checks.append(detail_names_both)

    return setup


# -- 2. one odd record never stops the others ---------------------------------------------------


def _stripe_poison(amount: int, currency: str = "usd") -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _bystander(scene)
        customer = _customer(scene, "poisoned", "sub_poisoned")
        scene.stripe.add_payment_intent(
            customer, amount, currency=currency, created=scene.ago(hours=30)
        )

    return setup


def _stripe_text_poison(company: str) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _bystander(scene)
        customer = scene.stripe.add_customer(
            metadata={"moesif_company_id": company, "moesif_subscription_id": "sub_x"}
        )
        scene.stripe.add_payment_intent(customer, 900, created=scene.ago(hours=30))

    return setup


def _long_company(scene: Scene) -> None:
    _bystander(scene)
    _paying(scene, 1200, "c" * 500)


def _moesif_raw(json_text: str) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _bystander(scene)
        scene.moesif.add_raw_row(json_text)

    return setup


def _moesif_row(scene: Scene, **fields: object) -> str:
    row = {
        "company_id": "acme",
        "subscription_id": "sub_acme",
        "type": "credit",
        "amount": 5,
        "created_at": to_iso(scene.ago(hours=5)),
        "transaction_id": "manual-7",
        **fields,
    }
    return json.dumps(row)


def _moesif_amount(amount: str) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _bystander(scene)
        scene.moesif.add_raw_row(_moesif_row(scene).replace('"amount": 5', f'"amount": {amount}'))

    return setup


def _moesif_nul_description(scene: Scene) -> None:
    _bystander(scene)
    scene.moesif.add_row(
        "acme", "sub_acme", "credit", Decimal(5), scene.ago(hours=5), "manual-8", "a\x00b"
    )


# -- 3. a 2xx that is not JSON never confirms ---------------------------------------------------


def _spoiled_post(kind: str) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _paying(scene)

        original = scene.moesif.handle

        def spoil_first_post(method: str, target: str, headers: object, body: str) -> object:
            if method == "POST" and target.startswith(POST_PATH) and not spoiled:
                spoiled.append(True)
                scene.moesif.garble_next(kind)  # type: ignore[arg-type]
            return original(method, target, headers, body)  # type: ignore[arg-type]

        spoiled: list[bool] = []
        scene.monkeypatch.setattr(scene.moesif, "handle", spoil_first_post)

        def read_back(ran: Ran) -> None:
            assert spoiled
            assert [row["action"] for row in ran.rows] == ["posted"]

        scene.checks.append(read_back)

    return setup


# -- 4. echoed credentials ----------------------------------------------------------------------


def _moesif_echo(status: int, count: int) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _paying(scene)
        scene.moesif.echo_token = True
        scene.moesif.fail_next(status, count=count)
        if status < 500:
            scene.expected_posts.clear()

    return setup


def _moesif_echo_on_post(scene: Scene) -> None:
    _paying(scene)
    scene.expected_posts.clear()
    scene.moesif.echo_token = True
    _on_first_post(scene.world, "reject")

    def refused(ran: Ran) -> None:
        assert [row["action"] for row in ran.rows] == ["post_failed"]

    scene.checks.append(refused)


def _stripe_echo_on_500s(scene: Scene) -> None:
    _paying(scene)
    scene.expected_posts.clear()
    scene.stripe.fail_next(500, count=100)


def _stripe_echo(scene: Scene) -> None:
    _paying(scene)
    scene.expected_posts.clear()
    scene.setenv("STRIPE_API_KEY", "sk_test_canary_wrong_key_4040")

    def no_wrong_key(ran: Ran) -> None:
        assert "sk_test_canary_wrong_key_4040" not in ran.out + ran.err + ran.database_text

    scene.checks.append(no_wrong_key)


# -- 5. nothing unbounded ----------------------------------------------------------------------


def _repeat_pages(scene: Scene) -> None:
    _paying(scene)
    scene.expected_posts.clear()
    scene.stripe.repeat_pages = True


def _ignore_window(scene: Scene) -> None:
    _paying(scene)
    scene.moesif.ignore_window = True
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(1), scene.ago(days=300), "old-1")


def _stripe_silent(scene: Scene) -> None:
    _paying(scene)
    scene.expected_posts.clear()
    scene.setenv("RECONCILE_RUN_TIMEOUT", "2s")
    scene.stripe.delay_next(4, count=3)


# -- 6. exits that tell the truth --------------------------------------------------------------


def _metrics_unwritable(scene: Scene) -> None:
    _paying(scene)
    blocker = scene.tmp_path / "a-file"
    blocker.write_text("not a directory")
    scene.setenv("RECONCILE_METRICS_FILE", str(blocker / "metrics.prom"))


def _stripe_garbled(kind: str, count: int, status: int = 200) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _paying(scene)
        if count > 1:
            scene.expected_posts.clear()
        scene.stripe.garble_next(kind, count=count, status=status)

    return setup


def _moesif_fail(status: int, count: int, body: str | None = None) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _paying(scene)
        if count > 1:
            scene.expected_posts.clear()
        scene.moesif.fail_next(status, count=count, body=body)

    return setup


def _moesif_garbled(kind: str, count: int) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _paying(scene)
        scene.expected_posts.clear()
        scene.moesif.garble_next(kind, count=count)  # type: ignore[arg-type]

    return setup


def _posts_unanswered(scene: Scene) -> None:
    payment = _paying(scene)
    scene.expected_posts.clear()
    scene.moesif.on_request = lambda exchange: "drop" if exchange.method == "POST" else None
    scene.checks.append(lambda ran: _names(ran, payment))


def _names(ran: Ran, payment: str) -> None:
    assert payment in [line for line in ran.err.splitlines() if "reconcile: error:" in line][0]


# -- 7. drift never drops out of view ----------------------------------------------------------


def _old_finding(scene: Scene) -> None:
    scene.moesif.add_subscription("sub_acme", "acme")
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(9), scene.ago(days=40), "stray-1")
    earlier = ["--since", to_iso(scene.ago(days=41)), "--until", to_iso(scene.ago(days=39))]
    assert main(earlier) == 1
    scene.argv = ["--since", to_iso(scene.ago(days=2))]

    def still_listed(ran: Ran) -> None:
        assert "stray-1" in {row["transaction_id"] for row in ran.rows}

    scene.checks.append(still_listed)


# -- 8. rows Moesif deleted --------------------------------------------------------------------


def _deleted_row(scene: Scene) -> None:
    scene.moesif.add_subscription("sub_acme", "acme")
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(9), scene.ago(hours=20), "stray-2")
    assert main(scene.argv) == 1
    scene.moesif.unlisted.add("stray-2")


# -- 8a. reads that leave rows out or are cut off ----------------------------------------------


def _credited(scene: Scene, count: int) -> list[str]:
    """Top-ups an old webhook credited in Moesif (random-id-free rows naming the payment)."""
    customer = _customer(scene)
    paid = []
    for index in range(count):
        created = scene.ago(hours=20 + index)
        payment = scene.stripe.add_payment_intent(customer, 1000 + index, created=created)
        amount = Decimal(1000 + index) / 100
        scene.moesif.add_row("acme", "sub_acme", "credit", amount, created, payment)
        paid.append(payment)
    return paid


def _held_once_each(scene: Scene, paid: list[str]) -> None:
    def held(ran: Ran) -> None:
        assert [scene.moesif.held(payment) for payment in paid] == [1] * len(paid)
        assert "marked gone:" not in ran.err

    scene.checks.append(held)


def _omitted_once(scene: Scene) -> None:
    paid = _credited(scene, 1)
    assert main(scene.argv) == 0
    scene.moesif.omit(paid[0])  # one read leaves it out; Moesif still holds it
    _held_once_each(scene, paid)


def _share_omitted_once(scene: Scene) -> None:
    paid = _credited(scene, 8)
    assert main(scene.argv) == 0
    scene.moesif.omit_share, scene.moesif.omit_seed = 0.5, 11
    _held_once_each(scene, paid)


def _deleted_credit(scene: Scene) -> None:
    [payment] = _credited(scene, 1)
    assert main(scene.argv) == 0
    [row] = scene.moesif.rows()
    scene.moesif.delete_rows(payment)
    scene.expected_posts.add(payment)

    def names_the_dropped_row(ran: Ran) -> None:
        [finding] = [found for found in ran.rows if found["transaction_id"] == payment]
        assert finding["action"] == "posted"
        assert row.id in finding["detail"]
        assert scene.moesif.held(payment) == 1

    scene.checks.append(names_the_dropped_row)


def _truncated_at_cap(scene: Scene) -> None:
    paid = _credited(scene, 5)
    _bystander(scene)
    scene.moesif.read_cap = 3
    scene.setenv("RECONCILE_MOESIF_READ_CAP", "3")
    _held_once_each(scene, paid)


def _same_rows_every_window(scene: Scene) -> None:
    _credited(scene, 5)
    assert main(scene.argv) == 0
    _bystander(scene)
    scene.expected_posts.clear()
    scene.moesif.read_cap, scene.moesif.cap_mode = 3, "same"
    scene.setenv("RECONCILE_MOESIF_READ_CAP", "3")

    def failed_concluding_nothing(ran: Ran) -> None:
        assert run_statuses(scene.database_url)[-1] == "failed"
        assert "marked gone:" not in ran.err

    scene.checks.append(failed_concluding_nothing)


# -- 8b. findings that settle: fixes in Moesif, operators' claims -------------------------------


def _all_resolved(ran: Ran) -> None:
    assert ran.rows
    assert {row["action"] for row in ran.rows} == {"resolved"}, ran.rows
    assert all(row["delta"] for row in ran.rows), ran.rows


def _misapplied_fixed(scene: Scene) -> None:
    payment = _paying(scene)
    scene.expected_posts.clear()
    scene.moesif.add_subscription("sub_globex", "globex")
    wrong = scene.moesif.add_row(
        "globex", "sub_globex", "credit", Decimal(25), scene.ago(hours=20), payment
    )
    assert main(scene.argv) == 1
    scene.moesif.remove_row(wrong.id)
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(25), scene.now, payment)
    scene.checks.append(_all_resolved)


def _cents_and_manual_fixed(scene: Scene) -> None:
    payment = _paying(scene)
    scene.expected_posts.clear()
    cents = scene.moesif.add_row(
        "acme", "sub_acme", "credit", Decimal(2500), scene.ago(hours=20), payment
    )
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(9), scene.ago(hours=10), "manual-9")
    assert main(scene.argv) == 1
    scene.moesif.remove_row(cents.id)
    scene.moesif.unlisted.add("manual-9")
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(25), scene.now, payment)
    scene.checks.append(_all_resolved)


def _old_finding_fixed(scene: Scene) -> None:
    _old_finding(scene)
    scene.checks.clear()
    scene.moesif.unlisted.add("stray-1")
    scene.checks.append(_all_resolved)


def _old_misapplied_fixed(scene: Scene) -> None:
    customer = _customer(scene)
    payment = scene.stripe.add_payment_intent(customer, 2500, created=scene.ago(days=40))
    scene.moesif.add_subscription("sub_globex", "globex")
    wrong = scene.moesif.add_row(
        "globex", "sub_globex", "credit", Decimal(25), scene.ago(days=40), payment
    )
    assert main(["--since", to_iso(scene.ago(days=41)), "--until", to_iso(scene.ago(days=39))]) == 1
    scene.moesif.remove_row(wrong.id)
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(25), scene.now, payment)
    scene.checks.append(_all_resolved)


def _first_finding(scene: Scene) -> str:
    assert main(scene.argv) == 1
    return scene.world.report_rows()[0]["finding_id"]


def _ignored_only(scene: Scene) -> None:
    scene.moesif.add_subscription("sub_acme", "acme")
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(9), scene.ago(hours=20), "gift-1")
    assert main(["findings", "ignore", _first_finding(scene), "--note", "goodwill"]) == 0

    def not_reported(ran: Ran) -> None:
        assert ran.rows == []
        assert "flagged for review: 0" in ran.out

    scene.checks.append(not_reported)


def _resolved_still_there(scene: Scene) -> None:
    scene.moesif.add_subscription("sub_acme", "acme")
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(9), scene.ago(hours=20), "stray-4")
    assert main(["findings", "resolve", _first_finding(scene), "--note", "fixed"]) == 0

    def reopened(ran: Ran) -> None:
        assert [row["action"] for row in ran.rows] == ["reopened"]

    scene.checks.append(reopened)


# -- 9. small ones -----------------------------------------------------------------------------


def _status_escapes(scene: Scene) -> None:
    scene.moesif.add_subscription("sub_acme", "acme")
    scene.moesif.add_row(
        "\x1b[31macme\x1b[0m", "sub_acme", "credit", Decimal(9), scene.ago(hours=20), "stray-3"
    )
    assert main(scene.argv) == 1
    scene.argv = ["status"]


def _unknown_company(scene: Scene) -> None:
    _paying(scene)
    scene.expected_posts.clear()
    scene.argv = [*scene.argv[:2], "--company", "nobody-by-this-id"]


def _duplicate_delta(scene: Scene) -> None:
    payment = _paying(scene)
    scene.expected_posts.clear()
    for hours in (20, 19):
        scene.moesif.add_row(
            "acme", "sub_acme", "credit", Decimal(25), scene.ago(hours=hours), payment
        )

    def negative(ran: Ran) -> None:
        [row] = [row for row in ran.rows if row["category"] == "duplicate_in_moesif"]
        assert row["delta"] == "-25.00"

    scene.checks.append(negative)


def _debit_delta(scene: Scene) -> None:
    payment = _paying(scene)
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(25), scene.ago(hours=20), payment)
    scene.expected_posts.clear()
    refund = scene.stripe.add_refund(payment, 1000, created=scene.ago(hours=10))
    scene.expected_posts.add(refund)

    def negative(ran: Ran) -> None:
        [row] = [row for row in ran.rows if row["transaction_id"] == refund]
        assert row["delta"] == "-10.00"

    scene.checks.append(negative)


def _summary_totals(scene: Scene) -> None:
    scene.moesif.add_subscription("sub_acme", "acme")
    scene.moesif.add_row("acme", "sub_acme", "credit", Decimal(9), scene.ago(hours=20), "stray-4")
    scene.argv = [*scene.argv[:2], "--log-format", "json"]

    def totals(ran: Ran) -> None:
        [summary] = [json.loads(line) for line in ran.err.splitlines() if '"run_summary"' in line]
        # totals are keyed category:currency:type, e.g. missing_in_stripe:usd:credit
        assert any(key.split(":")[0] == "missing_in_stripe" for key in summary["totals"])

    scene.checks.append(totals)


# -- formula text in every text field that reaches the CSV --------------------------------------

FORMULAS = ('=HYPERLINK("http://evil.example","x")', "+1", "-1", "@SUM(A1:A9)")


def _formula_stripe(field: str, formula: str) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        company = formula if field == "company_id" else "acme"
        subscription = formula if field == "subscription_id" else "sub_acme"
        customer_id = formula if field == "stripe_customer_id" else None
        scene.moesif.add_subscription(subscription, company)
        customer = scene.stripe.add_customer(
            id=customer_id,
            metadata={"moesif_company_id": company, "moesif_subscription_id": subscription},
        )
        payment = scene.stripe.add_payment_intent(customer, 1500, created=scene.ago(days=1))
        scene.expected_posts.add(payment)
        scene.checks.append(lambda ran: _neutralised(ran, field, formula))

    return setup


def _formula_moesif(field: str, formula: str) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _bystander(scene)
        values = {
            "company_id": "acme",
            "subscription_id": "sub_acme",
            "transaction_id": "manual-9",
            "description": "by hand",
        }
        values[field] = formula
        scene.moesif.add_subscription(values["subscription_id"], values["company_id"])
        scene.moesif.add_row(
            values["company_id"],
            values["subscription_id"],
            "credit",
            Decimal(3),
            scene.ago(hours=6),
            values["transaction_id"],
            values["description"],
        )
        if field != "description":
            scene.checks.append(lambda ran: _neutralised(ran, field, formula))

    return setup


def _neutralised(ran: Ran, field: str, formula: str) -> None:
    """The formula reached the CSV, in its column, as text a spreadsheet will not run."""
    assert "'" + formula in {row[field] for row in ran.rows}


# -- snapshot files that are not databases -----------------------------------------------------


def _snapshot(make: Callable[[Path], str]) -> Callable[[Scene], None]:
    def setup(scene: Scene) -> None:
        _paying(scene)
        scene.expected_posts.clear()
        url = make(scene.tmp_path)
        scene.setenv("RECONCILE_DATABASE_URL", url)
        scene.database_url = url if url.startswith("sqlite:///") else scene.database_url

    return setup


def _not_a_database(tmp_path: Path) -> str:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    return f"sqlite:///{path}"


def _truncated_database(tmp_path: Path) -> str:
    path = tmp_path / "cut.db"
    good = tmp_path / "good.db"
    engine = make_engine(f"sqlite:///{good}")
    upgrade_to_head(engine)
    engine.dispose()
    path.write_bytes(good.read_bytes()[:3000])
    return f"sqlite:///{path}"


def _locked_briefly(scene: Scene) -> None:
    _paying(scene)
    path = scene.tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    holder = sqlite3.connect(path, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")

    def release() -> None:
        holder.rollback()
        holder.close()

    threading.Timer(1.0, release).start()
    scene.setenv("RECONCILE_DATABASE_URL", url)
    scene.database_url = url


def _lock_held(scene: Scene) -> None:
    _paying(scene)
    scene.expected_posts.clear()
    engine = make_engine(scene.database_url)
    upgrade_to_head(engine)
    context = run_lock(engine)
    context.__enter__()
    scene.checks.append(lambda ran: (context.__exit__(None, None, None), engine.dispose()))


def _unreachable_postgres(scene: Scene) -> None:
    _paying(scene)
    scene.expected_posts.clear()
    scene.setenv(
        "RECONCILE_DATABASE_URL", f"postgresql+psycopg://reconcile:{DB_PASSWORD}@127.0.0.1:1/x"
    )


CASES: list[Case] = [
    # 1. a credit on the wrong customer
    Case("misapplied on another company", _misapplied(True), 1, "", "misapplied"),
    Case(
        "misapplied on another subscription",
        _misapplied(False),
        1,
        "",
        "misapplied",
    ),
    # 2. one odd record stops nobody else
    Case("company id of 500 characters", _long_company, 0, "posted", both_databases=True),
    Case(
        "Stripe currency xyz",
        _stripe_poison(1234, "xyz"),
        1,
        "",
        "unreadable",
    ),
    Case(
        "Stripe currency usdollar",
        _stripe_poison(1234, "usdollar"),
        1,
        "",
        "unreadable",
        True,
    ),
    Case("Stripe amount negative", _stripe_poison(-500), 1, "", "unreadable"),
    Case("Stripe amount 10^15", _stripe_poison(10**15), 1, "", "unreadable"),
    Case(
        "Stripe amount 2^63",
        _stripe_poison(2**63),
        1,
        "",
        "unreadable",
        True,
    ),
    Case(
        "Stripe company NUL byte",
        _stripe_text_poison("ac\x00me"),
        1,
        "",
        "unreadable",
        True,
    ),
    Case(
        "Moesif amount 1e50",
        _moesif_amount('"1e50"'),
        1,
        "",
        "unreadable",
        True,
    ),
    Case("Moesif amount NaN", _moesif_amount("NaN"), 1, "", "unreadable"),
    Case("Moesif amount text", _moesif_amount('"lots"'), 1, "", "unreadable"),
    Case(
        "Moesif row without time",
        _moesif_raw(
            '{"company_id": "acme", "subscription_id": "sub_acme", "type": "credit", "amount": 4}'
        ),
        1,
        "",
        "unreadable",
    ),
    Case(
        "Moesif row that is a string",
        _moesif_raw('"just text"'),
        1,
        "",
        "unreadable",
    ),
    Case(
        "Moesif description NUL byte",
        _moesif_nul_description,
        1,
        "",
        "unreadable",
        True,
    ),
    # 3. a 2xx that is not JSON is read back, not believed
    Case("Moesif POST 200 HTML", _spoiled_post("html"), 0, "posted"),
    Case("Moesif POST 200 truncated JSON", _spoiled_post("truncated"), 0, "posted"),
    Case("Moesif POST 200 non-UTF-8", _spoiled_post("non_utf8"), 0, "posted"),
    # 4. echoed credentials
    Case("Moesif echoes the token on 503s", _moesif_echo(503, 2), 0, "posted"),
    Case("Moesif echoes the token refusing a read", _moesif_echo(422, 1), 3, "Moesif"),
    Case("Stripe echoes a rejected key", _stripe_echo, 2, "Stripe refused the API key"),
    Case("Stripe echoes the key on 500s", _stripe_echo_on_500s, 3, "Stripe", both_databases=True),
    Case(
        "Moesif echoes the token refusing a POST",
        _moesif_echo_on_post,
        1,
        "failed to post: 1",
        "missing_in_moesif",
        both_databases=True,
    ),
    # 5. nothing unbounded
    Case("Stripe repeats its pages forever", _repeat_pages, 3, "do not advance"),
    Case("Moesif ignores from/to", _ignore_window, 0, "posted"),
    Case("Stripe rate 0.0001", _env("STRIPE_MAX_REQUESTS_PER_SECOND", "0.0001"), 2, "between"),
    Case("Stripe never answers", _stripe_silent, 3, "RECONCILE_RUN_TIMEOUT"),
    # 6. exits that do not lie
    Case("lookback 9999999999d", _env("RECONCILE_LOOKBACK", "9999999999d"), 2, "3650 days"),
    Case("max postings superscript", _env("RECONCILE_MAX_POSTINGS", "²"), 2, "whole number"),
    Case("metrics file unwritable", _metrics_unwritable, 0, "metrics"),
    Case("--since 0001-01-01", _argv("--since", "0001-01-01"), 2, "outside the dates"),
    Case("match window P99999999D", _env("RECONCILE_MATCH_WINDOW", "P99999999D"), 2, "3650"),
    Case("Stripe 200 JSON array", _stripe_garbled("array", 100), 3, "not a JSON object"),
    Case("Moesif read 500 once", _moesif_fail(500, 1), 0, "posted"),
    Case(
        "postings unanswered",
        _posts_unanswered,
        3,
        "Moesif",
    ),
    Case("STRIPE_API_BASE=http://", _env("STRIPE_API_BASE", "http://"), 2, "host"),
    Case("MOESIF_API_BASE port 99999", _env("MOESIF_API_BASE", "http://h:99999/v1"), 2, "port"),
    Case(
        "driver not installed",
        _env("RECONCILE_DATABASE_URL", "postgresql+asyncpg://u@h/d"),
        2,
        "not installed",
    ),
    Case("in-memory sqlite", _env("RECONCILE_DATABASE_URL", "sqlite://"), 2, "in-memory"),
    Case("retry attempts 1000", _env("RECONCILE_RETRY_ATTEMPTS", "1000"), 2, "between 1 and 20"),
    Case("run timeout forever", _env("RECONCILE_RUN_TIMEOUT", "forever"), 2, "not a duration"),
    Case("lookback in Arabic digits", _env("RECONCILE_LOOKBACK", "٣d"), 2, "not a duration"),
    Case("Moesif amount unit other", _env("MOESIF_AMOUNT_UNIT", "cents"), 2, "MOESIF_AMOUNT_UNIT"),
    Case(
        "Moesif token missing", _env("MOESIF_MANAGEMENT_TOKEN", " "), 2, "MOESIF_MANAGEMENT_TOKEN"
    ),
    Case(
        "--since after --until",
        _argv("--since", "2026-11-02", "--until", "2026-11-01"),
        2,
        "before --until",
    ),
    # 7. drift never drops out of view
    Case(
        "a finding older than the lookback",
        _old_finding,
        1,
        "",
        "missing_in_stripe",
    ),
    # 8. rows Moesif no longer returns
    Case(
        "a row deleted from Moesif",
        _deleted_row,
        0,
        "finished with exit 0",
    ),
    # 8a. reads that leave rows out or are cut off prove no absence
    Case(
        "Moesif leaves a held row out of one read",
        _omitted_once,
        0,
        "finished with exit 0",
        both_databases=True,
    ),
    Case(
        "Moesif leaves a seeded half of the rows out once",
        _share_omitted_once,
        0,
        "finished with exit 0",
    ),
    Case("Moesif deleted a credited row", _deleted_credit, 0, "posted", both_databases=True),
    Case(
        "Moesif cuts answers off at the read cap",
        _truncated_at_cap,
        0,
        "posted",
        both_databases=True,
    ),
    Case(
        "Moesif answers every window with the same rows",
        _same_rows_every_window,
        3,
        "RECONCILE_MOESIF_READ_CAP=3",
        both_databases=True,
    ),
    Case("read cap 0", _env("RECONCILE_MOESIF_READ_CAP", "0"), 2, "RECONCILE_MOESIF_READ_CAP"),
    # 8b. findings settle: fixed in Moesif (wherever they lie), ignored, or resolved and checked
    Case("misapplied fixed as README says", _misapplied_fixed, 0, "", "misapplied", True),
    Case(
        "manual credit removed, cents row replaced",
        _cents_and_manual_fixed,
        0,
        "",
        "amount_mismatch",
        True,
    ),
    Case("old finding fixed in Moesif", _old_finding_fixed, 0, "", "missing_in_stripe", True),
    Case("old misapplied fixed in Moesif", _old_misapplied_fixed, 0, "", "misapplied", True),
    Case("ignored finding only", _ignored_only, 0, "finished with exit 0", both_databases=True),
    Case(
        "resolved while the drift remains",
        _resolved_still_there,
        1,
        "",
        "missing_in_stripe",
        True,
    ),
    # 9. small ones
    Case(
        "status prints no escape sequences",
        _status_escapes,
        0,
        "runs",
    ),
    Case(
        "--company matching nothing warns",
        _unknown_company,
        0,
        "nobody-by-this-id",
    ),
    Case(
        "duplicate's delta is the over-credit",
        _duplicate_delta,
        1,
        "",
        "duplicate_in_moesif",
    ),
    Case(
        "a missing debit's delta is negative",
        _debit_delta,
        0,
        "posted",
    ),
    Case(
        "run_summary totals missing_in_stripe",
        _summary_totals,
        1,
        "run_summary",
    ),
    # HTML pages, truncated JSON, wrong shapes, bytes that are not UTF-8, from either side
    Case("Stripe HTML 502 page persists", _stripe_garbled("html", 100, 502), 3, "HTTP 502"),
    Case("Stripe HTML 200 once", _stripe_garbled("html", 1), 0, "posted"),
    Case("Stripe truncated JSON persists", _stripe_garbled("truncated", 100), 3, "Stripe"),
    Case("Stripe non-UTF-8 persists", _stripe_garbled("non_utf8", 100), 3, "Stripe"),
    Case("Moesif HTML read persists", _moesif_garbled("html", 100), 3, "Moesif"),
    Case("Moesif truncated read persists", _moesif_garbled("truncated", 100), 3, "Moesif"),
    Case("Moesif non-UTF-8 read persists", _moesif_garbled("non_utf8", 100), 3, "Moesif"),
    Case("Moesif array for a subscription", _moesif_garbled("array", 100), 3, "Moesif"),
    Case("Moesif object for the reports", _moesif_fail(200, 100, '{"rows": []}'), 3, "Moesif"),
    Case("Moesif HTML 502 page persists", _moesif_fail(502, 100, "<html>502</html>"), 3, "Moesif"),
    # snapshots that are not usable databases
    Case("snapshot is a text file", _snapshot(_not_a_database), 3, "snapshot database"),
    Case("snapshot is a cut database", _snapshot(_truncated_database), 3, "snapshot database"),
    Case("snapshot is a directory", _snapshot(lambda tmp: f"sqlite:///{tmp}"), 3, "snapshot"),
    Case(
        "snapshot in a missing folder",
        _snapshot(lambda tmp: f"sqlite:///{tmp}/no/x.db"),
        3,
        "snapshot",
    ),
    Case("snapshot locked for a moment", _locked_briefly, 0, "posted"),
    Case("snapshot PostgreSQL unreachable", _unreachable_postgres, 3, "snapshot database"),
    Case("another run holds the lock", _lock_held, 75, "lock", both_databases=True),
]

CASES += [
    Case(f"formula {formula[:5]} in {field}", _formula_stripe(field, formula), 0, "posted")
    for field in ("company_id", "subscription_id", "stripe_customer_id")
    for formula in FORMULAS
]
CASES += [
    Case(
        f"formula {formula[:5]} in Moesif {field}",
        _formula_moesif(field, formula),
        1,
        "",
        "missing_in_stripe",
    )
    for field in ("company_id", "subscription_id", "transaction_id", "description")
    for formula in FORMULAS
]


def _params() -> Iterator[object]:
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        yield pytest.param(case, "sqlite", id=f"{case.name}-sqlite", marks=marks)
        if case.both_databases:
            yield pytest.param(
                case,
                "postgresql",
                id=f"{case.name}-postgresql",
                marks=[*marks, pytest.mark.postgres],
            )


@pytest.fixture
def hostile(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Hostile]:
    backend = request.node.callspec.params["backend"]
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'snapshot.db'}"
    else:
        from tests.conftest import _empty_postgres

        url = request.getfixturevalue("postgres_database")
        _empty_postgres(url)
    yield from hostile_world(url, tmp_path, monkeypatch)


@pytest.mark.parametrize(("case", "backend"), list(_params()))
def test_hostile_input(
    case: Case, backend: str, hostile: Hostile, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = hostile.scene()
    case.setup(scene)
    capsys.readouterr()
    check(case, scene, run(scene, capsys))


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 50
    assert len({case.name for case in CASES}) == len(CASES)
