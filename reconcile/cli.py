"""The command line: parse, build settings, call the run, turn the result into an exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from reconcile import __version__
from reconcile.config import Settings, environment
from reconcile.domain.times import parse_when
from reconcile.errors import ExitCode, ReconcileError, RunFailed
from reconcile.redaction import NO_SECRETS

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker
    from starlette.applications import Starlette

    from reconcile.operator.console.queue import Corrector

log = logging.getLogger("reconcile")

COMMANDS = ("demo", "status", "balances", "serve", "findings", "statement", "worker")
COMMAND_SUMMARIES = {
    "demo": "a self-contained demo against the bundled fakes",
    "status": "run history and open findings",
    "balances": "per-subscription balances, Stripe beside Moesif",
    "serve": "the webhook, /top-up and the review page (--only console: the page alone)",
    "findings": "the exception queue: list, assign, comment, close, correct findings",
    "statement": "a customer's statement: opening balance, movements, closing, tie-out",
    "worker": "take connected accounts from the job queue (PostgreSQL; --progress: each one)",
}
"""One line per command for ``reconcile --help``; a command without one is listed bare."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        """Print one line naming the problem and exit with the usage code."""
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _when(text: str) -> datetime:
    try:
        return parse_when(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_parser() -> argparse.ArgumentParser:
    """Return the parser of a reconciliation run."""
    parser = _Parser(
        prog="reconcile",
        description="Reconcile prepaid API credit between Stripe and Moesif for a time window."
        "\n\nOther commands (each has its own --help):\n"
        + "\n".join(
            f"  reconcile {name:<9} {COMMAND_SUMMARIES.get(name, '')}".rstrip() for name in COMMANDS
        ),
        epilog="Exit codes: 0 nothing to review, 1 drift flagged for review, 2 usage or "
        "configuration error, 3 run failed (rerun resumes), 4 guardrail stopped posting, "
        "75 another run holds the lock.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--since", type=_when, help="window start, ISO 8601 (UTC if no offset)")
    parser.add_argument("--until", type=_when, help="window end, exclusive (default: now)")
    parser.add_argument("--dry-run", action="store_true", help="read, match and report only")
    parser.add_argument(
        "--report-dir", type=Path, help="where the CSV report goes (default RECONCILE_REPORT_DIR)"
    )
    parser.add_argument(
        "--company",
        nargs="+",
        action="extend",
        default=[],
        metavar="ID",
        help="only these Moesif company ids (the watermark stays where it is)",
    )
    parser.add_argument(
        "--accounts",
        type=_accounts,
        metavar="all|acct_…,…",
        help="connected Stripe accounts to read, each with its own watermark (STRIPE_ACCOUNTS)",
    )
    _common(parser)
    return parser


def _accounts(text: str) -> tuple[str, ...]:
    from reconcile.rules.accounts import parse_accounts

    try:
        return parse_accounts(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=("text", "json"), help="log line format")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    parser.add_argument("--version", action="version", version=f"reconcile {__version__}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        return _subcommand(args[0], args[1:])
    parser = run_parser()
    namespace = parser.parse_args(args)
    if namespace.since and namespace.until and namespace.since >= namespace.until:
        parser.error("--since must be before --until")
    try:
        settings = Settings.from_env()
    except ReconcileError as error:
        return _fail(error)
    _configure_logging(settings, namespace.log_format, namespace.verbose)
    return _run(settings, namespace)


def _run(settings: Settings, namespace: argparse.Namespace) -> int:
    from reconcile.after_run import after_run
    from reconcile.clients import open_clients, utc_now
    from reconcile.run import RunRequest, execute

    request = RunRequest(
        since=namespace.since,
        until=namespace.until,
        dry_run=namespace.dry_run,
        companies=tuple(namespace.company),
        report_dir=namespace.report_dir,
        trigger="manual",
    )
    accounts = namespace.accounts or settings.stripe_accounts
    if accounts:
        from reconcile.accounts.command import run_accounts

        return run_accounts(settings, request, accounts, emit=print, fail=_fail)
    began = utc_now()
    try:
        with open_clients(settings) as clients:
            outcome = execute(settings, request, clients)
    except ReconcileError as error:
        after_run(settings, error, log, utc_now, began=began)
        return _fail(error, settings)
    except KeyboardInterrupt:
        interrupted = RunFailed("interrupted; postings made so far are recorded, a rerun resumes")
        return _fail(interrupted, settings)
    except Exception as error:  # noqa: BLE001 - the one place an unexpected error becomes a line
        log.debug("unexpected error", exc_info=True)
        internal = ReconcileError(f"internal error: {type(error).__name__}: {error}")
        return _fail(internal, settings)
    print(outcome.summary)
    exit_code = after_run(settings, outcome, log, utc_now, began=began)
    if outcome.message:  # last, so that it is the line an operator reads
        print(f"reconcile: {settings.redactor().text(outcome.message)}", file=sys.stderr)
    return exit_code


def _configure_logging(settings: Settings, fmt: str | None, verbose: bool) -> None:
    from reconcile.observability import configure_logging

    configure_logging(
        logging.DEBUG if verbose else logging.INFO,
        "json" if (fmt or settings.log_format) == "json" else "text",
        settings.secret_values(),
    )


def _fail(error: ReconcileError, settings: Settings | None = None) -> int:
    """Print the error on one line, every secret masked, and return its exit code."""
    redactor = settings.redactor() if settings is not None else NO_SECRETS
    print(f"reconcile: error: {redactor.message(error)}", file=sys.stderr)
    return int(error.exit_code)


def _subcommand(name: str, args: list[str]) -> int:
    if name == "demo":
        from reconcile.demo import main as demo_main

        return demo_main(args)
    if name == "balances":
        return _balances(args)
    if name == "findings":
        return _findings(args)
    if name == "statement":
        return _statement(args)
    if name == "worker":
        from reconcile.accounts.worker_command import main as worker_main

        return worker_main(args, _Parser, _fail)
    if name == "serve":
        from reconcile.serve.command import main as serve_main

        return serve_main(args, _Parser, _console_page)
    return _status(args)


def _console_page(
    values: Mapping[str, str],
    report_dir: Path,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
) -> Starlette:
    """Build the review page ``reconcile serve`` mounts at ``/`` (off without its token)."""
    from reconcile.config import priority_rules_from_env
    from reconcile.operator.console.app import create_console_app
    from reconcile.operator.console.queue import QueueTools
    from reconcile.operator.console.settings import ConsoleSettings

    tools = QueueTools(priority_rules_from_env(values), _page_corrector(values, sessions, clock))
    return create_console_app(
        ConsoleSettings.from_env(values, report_dir), sessions, clock, tools=tools
    )


def _page_corrector(
    values: Mapping[str, str], sessions: sessionmaker[Session], clock: Callable[[], datetime]
) -> Corrector | None:
    """Return how the review page posts a correction, or ``None`` without Moesif's token."""
    from reconcile.domain.vocab import NoteSource
    from reconcile.operator.console.queue import CONSOLE_ACTOR
    from reconcile.operator.corrections import Corrected, correct
    from reconcile.rules.correction import Plan

    if not values.get("MOESIF_MANAGEMENT_TOKEN", "").strip():
        return None
    stripe_key = values.get("STRIPE_API_KEY") or "not-needed-for-corrections"
    try:
        settings = Settings.from_env({**values, "STRIPE_API_KEY": stripe_key}, dotenv=None)
    except ReconcileError as error:
        log.warning("the review page cannot post corrections: %s", error)
        return None

    def corrector(the_plan: Plan, note: str) -> Corrected:
        from reconcile.clients import open_clients

        with open_clients(settings, clock=clock) as clients:
            return correct(
                sessions,
                settings,
                clients.moesif,
                the_plan,
                note=note,
                actor=CONSOLE_ACTOR,
                source=NoteSource.PAGE,
                clock=clock,
            )

    return corrector


def _balances(args: list[str]) -> int:
    from datetime import UTC

    from reconcile.operator.balances import check_balances, summary_line

    parser = _Parser(
        prog="reconcile balances",
        description="Compare each subscription's Stripe and Moesif nets with its Moesif balance "
        "and write balances-{run_id}.csv. Exit 1 when any delta is not zero.",
    )
    parser.add_argument("--company", nargs="+", action="extend", default=[], metavar="ID")
    parser.add_argument("--report-dir", type=Path, help="where the CSV goes")
    parser.add_argument(
        "--since", type=_when, help="first fill the snapshot from WHEN (a dry run of the job)"
    )
    _common(parser)
    namespace = parser.parse_args(args)
    environ = environment(dotenv=None)
    if namespace.since is None:
        environ.setdefault("STRIPE_API_KEY", "not-needed-for-balances")
    try:
        settings = Settings.from_env(environ)
    except ReconcileError as error:
        return _fail(error)
    _configure_logging(settings, namespace.log_format, namespace.verbose)
    try:
        check = check_balances(
            settings,
            companies=tuple(namespace.company),
            report_dir=namespace.report_dir,
            since=namespace.since,
            clock=lambda: datetime.now(UTC),
            fill=_fill_snapshot,
        )
    except ReconcileError as error:
        return _fail(error, settings)
    print(summary_line(check.rows, check.path, check.read_from_moesif))
    return check.exit_code


def _statement(args: list[str]) -> int:
    import os
    from contextlib import nullcontext
    from datetime import UTC

    from reconcile.operator.statement import (
        StatementRequest,
        make_statement,
        moesif_balances,
        tie_out_lines,
    )

    parser = _Parser(
        prog="reconcile statement",
        description="Write a customer's statement from the snapshot: the opening balance, every "
        "movement, the closing balance and the tie-out, as "
        "statement-{company_id}-{run_id}.csv (or .html). Exit 0 when it ties out, 1 when a "
        "difference remains (each named by its finding id), 2 for an unknown company.",
    )
    parser.add_argument("--company", required=True, metavar="ID", help="the Moesif company")
    parser.add_argument(
        "--subscription", metavar="ID", help="its subscription (required when it has several)"
    )
    parser.add_argument("--since", type=_when, required=True, help="the opening balance's time")
    parser.add_argument(
        "--until",
        type=_when,
        help="the closing balance's time (default: now, compared with the balance Moesif reports)",
    )
    parser.add_argument("--format", choices=("csv", "html"), default="csv", dest="fmt")
    parser.add_argument("--report-dir", type=Path, help="where the statement goes")
    _common(parser)
    namespace = parser.parse_args(args)
    if namespace.until is not None and namespace.since >= namespace.until:
        parser.error("--since must be before --until")
    environ = dict(os.environ)
    environ.setdefault("STRIPE_API_KEY", "not-needed-for-statements")
    try:
        settings = Settings.from_env(environ)
    except ReconcileError as error:
        return _fail(error)
    _configure_logging(settings, namespace.log_format, namespace.verbose)
    request = StatementRequest(
        company_id=namespace.company,
        subscription_id=namespace.subscription,
        since=namespace.since,
        until=namespace.until,
        fmt=namespace.fmt,
    )
    try:
        with moesif_balances(settings) if namespace.until is None else nullcontext() as reported:
            result = make_statement(
                settings,
                request,
                clock=lambda: datetime.now(UTC),
                reported=reported,
                report_dir=namespace.report_dir,
            )
    except ReconcileError as error:
        return _fail(error, settings)
    for line in tie_out_lines(result.statement):
        print(line)
    print(f"statement: {result.path}")
    return result.exit_code


def _fill_snapshot(
    settings: Settings, since: datetime, companies: Sequence[str], report_dir: Path
) -> int:
    """Fill the snapshot from ``since`` to now with the normal job, as a dry run; return its code.

    The run pages Stripe and Moesif politely (its own rate limits) and stores every movement and
    ledger row of the window; as a dry run it posts nothing.
    """
    from reconcile.clients import open_clients
    from reconcile.run import RunRequest, execute

    request = RunRequest(
        since=since,
        dry_run=True,
        companies=tuple(companies),
        report_dir=report_dir,
        trigger="balances",
    )
    with open_clients(settings) as clients:
        outcome = execute(settings, request, clients)
    return int(outcome.exit_code)


def _status(args: list[str]) -> int:
    from reconcile.db.engine import database_revision, known_revisions, make_engine
    from reconcile.errors import ConfigError
    from reconcile.operator.status import (
        describe_database,
        missing_sqlite_file,
        schema_problem,
        status_report,
    )

    parser = _Parser(prog="reconcile status", description="Show recent runs and open findings.")
    parser.add_argument("--limit", type=int, default=10, help="how many runs to show")
    namespace = parser.parse_args(args)
    try:
        settings = Settings.from_env(_status_environment())
    except ReconcileError as error:
        return _fail(error)
    missing = missing_sqlite_file(settings.database_url)
    if missing is not None:
        return _fail(ConfigError(f"no snapshot database at {missing} (RECONCILE_DATABASE_URL)"))
    engine = make_engine(settings.database_url)
    try:
        head, known = known_revisions()
        problem = schema_problem(database_revision(engine), head, known)
        if problem is not None:
            where = describe_database(settings.database_url)
            raise ConfigError(f"the snapshot database {where} {problem}")
        print(status_report(engine, limit=namespace.limit))
    except ReconcileError as error:
        return _fail(error, settings)
    finally:
        engine.dispose()
    return ExitCode.OK


def emit(text: str) -> None:
    """Print ``text``; a reader that stopped reading (``| head``) ends the output quietly.

    The rest is sent to ``/dev/null``, so that the interpreter's last flush does not fail too.
    """
    import os

    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _status_environment() -> dict[str, str]:
    """Status reads only the database: credentials are not needed for it."""
    environ = environment(dotenv=None)
    environ.setdefault("STRIPE_API_KEY", "not-needed-for-status")
    environ.setdefault("MOESIF_MANAGEMENT_TOKEN", "not-needed-for-status")
    return environ


FINDING_ACTIONS = ("resolve", "ignore", "assign", "comment", "reopen", "correct")
"""What ``reconcile findings ACTION`` does to findings; without one it lists them."""


def _findings(args: list[str]) -> int:
    from datetime import UTC

    from sqlalchemy.exc import SQLAlchemyError

    from reconcile.config import priority_rules_from_env
    from reconcile.db.engine import describe, make_engine, upgrade_to_head
    from reconcile.db.finding_states import FindingFilter, UnknownFinding
    from reconcile.domain.vocab import Category
    from reconcile.errors import DatabaseUnavailable, UsageError
    from reconcile.operator.findings_view import SORTS, listing

    if args and args[0] in FINDING_ACTIONS:
        return _finding_action(args[0], args[1:])
    parser = _Parser(
        prog="reconcile findings",
        description="List the exception queue: findings needing review, most urgent first "
        "(priority, then due time; overdue ones marked). 'findings ACTION ID ...' acts on "
        f"them, ACTION one of {', '.join(FINDING_ACTIONS)} (see 'findings ACTION --help').",
    )
    parser.add_argument("--all", action="store_true", help="closed findings too")
    parser.add_argument(
        "--category",
        nargs="+",
        action="extend",
        default=[],
        choices=[category.value for category in Category],
        metavar="C",
        help="only these categories",
    )
    parser.add_argument(
        "--company",
        nargs="+",
        action="extend",
        default=[],
        metavar="TEXT",
        help="only companies whose id contains TEXT, ignoring case",
    )
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument(
        "--sort",
        choices=SORTS,
        default="queue",
        help="queue: priority, then due time (default); amount: customers blocked while owed "
        "first, then the largest within each currency (never across); age: oldest first",
    )
    namespace = parser.parse_args(args)
    try:
        settings = Settings.from_env(_status_environment())
        rules = priority_rules_from_env(_status_environment())
    except ReconcileError as error:
        return _fail(error)
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    try:
        upgrade_to_head(engine)
        where = FindingFilter(
            include_closed=namespace.all,
            categories=tuple(namespace.category),
            companies=tuple(namespace.company),
            largest_first=namespace.sort != "age",
        )
        emit(listing(engine, where, namespace.format, now, rules, namespace.sort))
    except UnknownFinding as unknown:
        return _fail(UsageError(str(unknown)), settings)
    except ReconcileError as error:
        return _fail(error, settings)
    except SQLAlchemyError as error:
        return _fail(DatabaseUnavailable(f"snapshot database failed: {describe(error)}"), settings)
    finally:
        engine.dispose()
    return ExitCode.OK


def _finding_action_parser(action: str) -> argparse.ArgumentParser:
    """Return the parser of ``reconcile findings ACTION``."""
    import getpass

    described = {
        "resolve": "Mark findings resolved (fixed), awaiting the next run's check, with a note.",
        "ignore": "Ignore findings for good (accepted drift), with the reason as the note.",
        "assign": "Give findings an owner; an open finding becomes assigned.",
        "comment": "Add a comment to a finding's trail.",
        "reopen": "Open again findings resolved, closed or ignored, with a reason.",
        "correct": "Post the credit or debit that settles a finding (corr_F-... ids, each at "
        "most once). Without --yes, print exactly what would be posted and post nothing.",
    }
    parser = _Parser(prog=f"reconcile findings {action}", description=described[action])
    single = action in ("comment", "correct")
    parser.add_argument("finding_ids", nargs=1 if single else "+", metavar="FINDING_ID")
    if action == "assign":
        parser.add_argument("--to", required=True, metavar="NAME", help="the owner")
    optional = action == "assign"
    parser.add_argument("--note", required=not optional, default="", help="why (kept in the trail)")
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    parser.add_argument("--by", default=user, metavar="NAME", help=f"who does it (default: {user})")
    if action == "correct":
        parser.add_argument("--yes", action="store_true", help="post it (after reading it)")
        parser.add_argument(
            "--confirmed-error",
            action="store_true",
            help="a missing_in_stripe row is an error: no Stripe movement stands behind it",
        )
    return parser


def _finding_action(action: str, args: list[str]) -> int:
    from datetime import UTC

    from sqlalchemy.exc import SQLAlchemyError

    from reconcile.db.engine import describe, make_engine, upgrade_to_head
    from reconcile.db.finding_states import UnknownFinding
    from reconcile.errors import DatabaseUnavailable, UsageError

    parser = _finding_action_parser(action)
    namespace = parser.parse_args(args)
    if action != "assign" and not namespace.note.strip():
        parser.error("--note must not be blank")
    if not namespace.by.strip():
        parser.error("--by must not be blank")
    try:
        settings = Settings.from_env(
            _correct_environment() if action == "correct" else _status_environment()
        )
    except ReconcileError as error:
        return _fail(error)
    engine = make_engine(settings.database_url)
    try:
        upgrade_to_head(engine)
        if action == "correct":
            return _correct(settings, engine, namespace)
        print(_act(engine, action, namespace, datetime.now(UTC)))
    except UnknownFinding as unknown:
        return _fail(UsageError(f"{unknown}; nothing was changed"), settings)
    except ReconcileError as error:
        return _fail(error, settings)
    except SQLAlchemyError as error:
        return _fail(DatabaseUnavailable(f"snapshot database failed: {describe(error)}"), settings)
    finally:
        engine.dispose()
    return ExitCode.OK


def _correct_environment() -> dict[str, str]:
    """A correction posts to Moesif, so it needs Moesif's token; Stripe it does not read."""
    import os

    environ = dict(os.environ)
    environ.setdefault("STRIPE_API_KEY", "not-needed-for-corrections")
    return environ


def _act(engine: Engine, action: str, namespace: argparse.Namespace, now: datetime) -> str:
    """Carry out ``findings resolve|ignore|assign|comment|reopen``; return what was done."""
    from sqlalchemy.orm import Session

    from reconcile.db.finding_states import (
        add_note,
        assign_findings,
        close_findings,
        reopen_findings,
    )
    from reconcile.domain.vocab import FindingStatus, NoteAction, NoteSource

    ids, note, by, cli = namespace.finding_ids, namespace.note, namespace.by.strip(), NoteSource.CLI
    with Session(engine) as session, session.begin():
        if action == "assign":
            done = assign_findings(session, ids, namespace.to, note, cli, now, by)
            return f"{len(done)} finding(s) assigned to {namespace.to.strip()}"
        if action == "comment":
            add_note(session, ids[0], NoteAction.COMMENTED, note, cli, now, by)
            return f"comment added to {ids[0]}"
        if action == "reopen":
            done = reopen_findings(session, ids, note, cli, now, by)
            return f"{len(done)} finding(s) open"
        status = FindingStatus.RESOLVED if action == "resolve" else FindingStatus.IGNORED
        done = close_findings(session, ids, status, note, cli, now, by)
        return f"{len(done)} finding(s) {status.value}"


def _correct(settings: Settings, engine: Engine, namespace: argparse.Namespace) -> int:
    """``findings correct``: print the confirmation; with ``--yes``, post it and say how it went."""
    from sqlalchemy.orm import sessionmaker

    from reconcile.clients import open_clients, utc_now
    from reconcile.domain.vocab import NoteSource
    from reconcile.operator.corrections import correct, planned
    from reconcile.rules.correction import confirmation

    sessions = sessionmaker(engine)
    [finding_id] = namespace.finding_ids
    the_plan = planned(sessions, finding_id, confirmed_error=namespace.confirmed_error)
    print(confirmation(the_plan))
    if not the_plan.postable:
        return ExitCode.USAGE if namespace.yes else ExitCode.OK
    if not namespace.yes:
        print("Nothing was posted; run again with --yes to post it.")
        return ExitCode.OK
    with open_clients(settings) as clients:
        done = correct(
            sessions,
            settings,
            clients.moesif,
            the_plan,
            note=namespace.note,
            actor=namespace.by.strip(),
            source=NoteSource.CLI,
            clock=utc_now,
        )
    print(done.lines())
    if not done.settled:
        print(
            "reconcile: not every leg is in Moesif; run the correction again later", file=sys.stderr
        )
        return ExitCode.FAILED
    print("Posted; the next run checks that the finding is settled.")
    return ExitCode.OK
