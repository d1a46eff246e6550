"""The review page as a Starlette application: login, runs, findings, closing them, balances.

Everything is rendered on the server by Jinja2 with autoescaping on for every template, so a
value from Stripe or Moesif (a company id of ``<script>…``) is shown as text. A login with
``RECONCILE_CONSOLE_TOKEN`` (at least 32 characters) starts a session kept in this process
(:mod:`~reconcile.operator.console.sessions`): the cookie, HttpOnly and SameSite=Strict, carries
only its random id, signing out revokes it, and a new token revokes them all. Each session
carries a CSRF token that every form posts back; the login form has its own, tied to a cookie.
Login attempts are limited per client and overall (429 with ``Retry-After``). Every answer,
errors included, carries :data:`~reconcile.security_headers.SECURITY_HEADERS`, and every
redirect is a path on this server, never built from the request's ``Host``.
"""

from __future__ import annotations

import csv
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from reconcile import live_path
from reconcile.db.finding_states import (
    FindingFilter,
    UnknownFinding,
    add_note,
    assign_findings,
    close_findings,
    get_finding,
    history_of,
    list_findings,
    notes_of,
    open_states,
    reopen_findings,
)
from reconcile.domain.money import format_major, to_minor
from reconcile.domain.vocab import FindingStatus, NoteAction, NoteSource
from reconcile.errors import ConfigError, ReconcileError
from reconcile.operator.balances import (
    BALANCE_COLUMNS,
    CSV_COLUMNS,
    build_rows,
    csv_cells,
    read_snapshot,
)
from reconcile.operator.console import queue, reads, statements
from reconcile.operator.console.chart import Chart, build_chart, build_signed_chart
from reconcile.operator.console.login_guard import LoginGuard
from reconcile.operator.console.money_view import (
    balance_view,
    finding_money,
    shown,
    signed_text,
)
from reconcile.operator.console.queue import QueueTools
from reconcile.operator.console.sessions import (
    SESSION_COOKIE,
    ServerSessions,
    SessionStore,
    session_id_of,
)
from reconcile.operator.console.settings import SESSION_LIFETIME, ConsoleSettings
from reconcile.operator.corrections import planned
from reconcile.operator.findings_view import SORTS as FINDING_SORTS
from reconcile.operator.findings_view import largest_first, most_urgent
from reconcile.operator.statement import UnknownCompany
from reconcile.rules.correction import confirmation
from reconcile.rules.login_limit import token_problem
from reconcile.safe_text import text_problem
from reconcile.security_headers import SECURITY_HEADERS, SecurityHeaders

log = logging.getLogger(__name__)

LOGIN_COOKIE = "reconcile_console_login"
"""The cookie that ties the login form's CSRF token to the browser that fetched the form."""
__all__ = ["SECURITY_HEADERS", "SESSION_COOKIE", "create_console_app"]
AGES = {"": None, "1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
"""The age filter's choices: findings first seen at least this long ago."""
CLOSE_ACTIONS = {"resolve": FindingStatus.RESOLVED, "ignore": FindingStatus.IGNORED}
SORTS = FINDING_SORTS
"""The queue's orders: priority then due time (the default); blocked-but-owed, then the largest
amount within each currency (never compared across currencies); oldest."""
MAX_NOTE = 2000
LISTED = 500
"""The most findings the queue lists at once."""


def create_console_app(
    settings: ConsoleSettings,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    store: SessionStore | None = None,
    *,
    tools: QueueTools | None = None,
) -> Starlette:
    """Return the review page; mount it at ``/``. Without a token every path answers 404.

    Args:
        settings: the token, the report directory (for the latest balances CSV), cookie flags.
        sessions: the snapshot database's session factory.
        clock: the current time (aware UTC), for ages, sessions, login limits and closing.
        store: where sessions are kept (a new, empty one by default).
        tools: the queue's priority thresholds and how corrections are posted (by default
            section 10a's thresholds, and corrections shown but not posted).

    Raises:
        ConfigError: the token is shorter than 32 characters or holds control characters.
    """
    if settings.token is None:
        off = Starlette(
            routes=[Route("/{path:path}", _off, methods=["GET", "POST"])],
            middleware=[Middleware(SecurityHeaders)],
        )
        off.router.redirect_slashes = False
        return off
    problem = token_problem(settings.token.reveal())
    if problem is not None:
        raise ConfigError(problem)
    store = SessionStore() if store is None else store
    console = _Console(settings, sessions, clock, store, tools or QueueTools())
    routes = [
        Route("/", console.runs, name="runs"),
        Route("/login", console.login_form, methods=["GET"], name="login"),
        Route("/login", console.login, methods=["POST"]),
        Route("/logout", console.logout, methods=["POST"], name="logout"),
        Route("/findings", console.findings, name="findings"),
        Route("/findings/bulk", console.bulk, methods=["POST"], name="bulk"),
        Route("/findings/{finding_id}", console.finding, name="finding"),
        Route("/findings/{finding_id}/close", console.close, methods=["POST"], name="close"),
        Route("/findings/{finding_id}/act", console.act, methods=["POST"], name="act"),
        Route("/findings/{finding_id}/correct", console.correct_form, name="correct_form"),
        Route("/findings/{finding_id}/correct", console.correct, methods=["POST"], name="correct"),
        Route("/balances", console.balances, name="balances"),
        Route("/companies/{company_id}", console.company, name="company"),
        Route("/companies/{company_id}/statement", console.statement, name="statement"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(ServerSessions, store=store, fingerprint=settings.session_key(), clock=clock),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    # Starlette would answer "/findings/" with a redirect built from the Host header.
    app.router.redirect_slashes = False
    return app


def _off(request: Request) -> Response:
    return PlainTextResponse("the review page is off (RECONCILE_CONSOLE_TOKEN is not set)", 404)


def _templates() -> Jinja2Templates:
    # Autoescape every template, whatever its name: all values are text to show, never markup.
    environment = Environment(loader=PackageLoader("reconcile.operator.console"), autoescape=True)
    environment.filters["major"] = _major
    environment.filters["amount"] = shown
    environment.filters["signed"] = signed_text
    return Jinja2Templates(env=environment)


def _major(minor: int | None, currency: str | None) -> str:
    if minor is None or not currency or len(currency) != 3 or not currency.isalpha():
        return "" if minor is None else str(minor)
    return format_major(int(minor), currency)


class _Console:
    """The page handlers, sharing settings, the database and the templates."""

    def __init__(
        self,
        settings: ConsoleSettings,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        store: SessionStore,
        tools: QueueTools,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.store = store
        self.guard = LoginGuard(settings.login_budget)
        self.tools = tools
        self.templates = _templates()

    # Rendering and the session.

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        context = {**context, "csrf": request.session.get("csrf", ""), "base": _base(request)}
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def redirect(self, request: Request, path: str) -> Response:
        return RedirectResponse(relative_location(_base(request), path), status_code=303)

    @staticmethod
    def signed_in(request: Request) -> bool:
        return request.session.get("operator") is True

    # Login.

    def login_form(self, request: Request) -> Response:
        return self.login_page(request, "", 200)

    def login_page(self, request: Request, error: str, status: int) -> Response:
        """Render the login form with a fresh CSRF token tied to a fresh login cookie."""
        nonce = secrets.token_urlsafe(32)
        context = {"error": error, "login_csrf": self.settings.login_csrf(nonce)}
        response = self.render(request, "login.html", context, status)
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path=(_base(request) or "") + "/login",
            secure=self.settings.secure_cookies,
            httponly=True,
            samesite="strict",
        )
        return response

    async def login(self, request: Request) -> Response:
        client = request.client.host if request.client is not None else "unknown"
        verdict = self.guard.attempt(client, self.clock())
        if not verdict.allowed:
            log.warning("review page: a login was refused, too many attempts")
            wait = verdict.retry_after_seconds
            refused = self.login_page(
                request, f"Too many sign-in attempts; try again in {wait} seconds.", 429
            )
            refused.headers["Retry-After"] = str(wait)
            return refused
        form = await request.form()
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        offered_csrf = form.get("csrf")
        if (
            not nonce
            or not isinstance(offered_csrf, str)
            or not hmac.compare_digest(
                offered_csrf.encode(), self.settings.login_csrf(nonce).encode()
            )
        ):
            log.warning("review page: a login without a valid CSRF token was refused")
            return self.login_page(request, "The form had expired; sign in again.", 403)
        offered = form.get("token")
        if not isinstance(offered, str) or not self.settings.token_matches(offered.strip()):
            log.warning("review page: a login with a wrong token")
            return self.login_page(request, "That token is not right.", 401)
        self.guard.signed_in(client)
        self.store.end(session_id_of(request.scope))
        started = self.store.start(self.settings.session_key(), self.clock())
        response = self.redirect(request, "/")
        response.set_cookie(
            SESSION_COOKIE,
            started.session_id,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path=_base(request) or "/",
            secure=self.settings.secure_cookies,
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(LOGIN_COOKIE, path=(_base(request) or "") + "/login")
        return response

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        response = self.redirect(request, "/login")
        if self.signed_in(request) and _csrf_ok(request, form.get("csrf")):
            self.store.end(session_id_of(request.scope))
            response.delete_cookie(
                SESSION_COOKIE,
                path=_base(request) or "/",
                secure=self.settings.secure_cookies,
                httponly=True,
                samesite="strict",
            )
        return response

    # Pages.

    async def runs(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.redirect(request, "/login")
        context = await run_in_threadpool(self._runs_context)
        return self.render(request, "runs.html", context)

    def _runs_context(self) -> dict[str, Any]:
        now = self.clock()
        with self.sessions() as session:
            runs = reads.recent_runs(session)
            drift = reads.drift_over_time(session, runs)
            per_currency = reads.drift_per_currency(session, runs)
            headline = reads.money_headline(session, runs[0] if runs else None)
            missed = live_path.measure(session, now)
            late = queue.overdue_rows(open_states(session), now, self.tools.rules)
        return {
            "headline": headline,
            "runs": runs,
            "miss_rate": missed,
            "overdue": late[: queue.OVERDUE_SHOWN],
            "overdue_count": len(late),
            "count_chart": build_chart(drift.moments, drift.counts),
            "currency_charts": [
                (line.currency.upper(), _currency_chart(drift.moments, line))
                for line in per_currency
            ],
        }

    async def findings(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.redirect(request, "/login")
        params = request.query_params
        chosen = {
            "category": params.get("category", ""),
            "company": params.get("company", "").strip(),
            "age": params.get("age", "") if params.get("age", "") in AGES else "",
            "sort": params.get("sort", "") if params.get("sort", "") in SORTS else "queue",
        }
        where = FindingFilter(
            categories=(chosen["category"],) if chosen["category"] else (),
            companies=(chosen["company"],) if chosen["company"] else (),
            older_than=AGES[chosen["age"]],
            largest_first=chosen["sort"] != "age",
            limit=LISTED,
        )
        states = await run_in_threadpool(self._list, where, chosen["sort"])
        rows = queue.in_queue_order(states, self.clock(), self.tools.rules)
        if chosen["sort"] != "queue":
            place = {state.finding_id: index for index, state in enumerate(states)}
            rows = sorted(rows, key=lambda row: place[row.state.finding_id])
        context = {
            "states": states,
            "rows": rows,
            "bulk_actions": queue.BULK_ACTIONS,
            "chosen": chosen,
            "categories": sorted({"", *(s.category for s in states), chosen["category"]}),
            "ages": list(AGES),
            "closed": params.get("closed", ""),
            "done": params.get("done", ""),
        }
        return self.render(request, "findings.html", context)

    def _list(self, where: FindingFilter, sort: str = "queue") -> list[Any]:
        with self.sessions() as session:
            if sort == "amount":
                return largest_first(session, where, self.clock())
            if sort == "queue":
                return most_urgent(session, where, self.clock(), self.tools.rules)
            return list_findings(session, where, self.clock())

    async def finding(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.redirect(request, "/login")
        context = await run_in_threadpool(self._finding_context, request.path_params["finding_id"])
        if context is None:
            return self.render(request, "missing.html", {}, status=404)
        return self.render(request, "finding.html", context)

    def _finding_context(self, finding_id: str) -> dict[str, Any] | None:
        with self.sessions() as session:
            state = get_finding(session, finding_id)
            if state is None:
                return None
            [row] = queue.in_queue_order([state], self.clock(), self.tools.rules)
            return {
                "state": state,
                "money": finding_money(
                    state.stripe_amount_minor,
                    state.moesif_amount_minor,
                    state.delta_minor,
                    state.currency,
                ),
                "queued": row,
                "what_to_do": queue.what_to_do(state.category),
                "correctable": queue.correctable(state.category),
                "history": history_of(session, state),
                "records": reads.records_of(session, state),
                "notes": notes_of(session, finding_id),
            }

    async def close(self, request: Request) -> Response:
        if not self.signed_in(request):
            return PlainTextResponse("sign in first", status_code=401)
        form = await request.form()
        if not _csrf_ok(request, form.get("csrf")):
            log.warning("review page: a close without a valid CSRF token was refused")
            return PlainTextResponse("the form has expired; reload the page", status_code=403)
        finding_id = request.path_params["finding_id"]
        action, note = form.get("action"), form.get("note")
        if not isinstance(action, str) or action not in CLOSE_ACTIONS:
            return PlainTextResponse("choose resolve or ignore", status_code=400)
        if not isinstance(note, str) or not note.strip() or len(note) > MAX_NOTE:
            return PlainTextResponse(f"a note of 1 to {MAX_NOTE} characters is needed", 400)
        problem = text_problem(note) or text_problem(finding_id)
        if problem is not None:
            return PlainTextResponse(f"the note cannot be stored: {problem}", 400)
        try:
            await run_in_threadpool(self._close, finding_id, CLOSE_ACTIONS[action], note.strip())
        except UnknownFinding:
            return self.render(request, "missing.html", {}, status=404)
        return self.redirect(request, f"/findings?closed={finding_id}")

    def _close(self, finding_id: str, status: FindingStatus, note: str) -> None:
        with self.sessions.begin() as session:
            close_findings(
                session,
                [finding_id],
                status,
                note,
                NoteSource.PAGE,
                self.clock(),
                queue.CONSOLE_ACTOR,
            )

    # The exception queue: bulk assign and close, assign, comment, reopen, correct.

    async def bulk(self, request: Request) -> Response:
        form, refused = await self._checked_form(request)
        if refused is not None:
            return refused
        ids = [value for value in form.getlist("finding_id") if isinstance(value, str)]
        action, note, owner = form.get("action"), _text(form.get("note")), _text(form.get("owner"))
        if action not in queue.BULK_ACTIONS:
            return PlainTextResponse("choose assign, resolve or ignore", status_code=400)
        if not ids or len(ids) > 500:
            return PlainTextResponse("tick 1 to 500 findings", status_code=400)
        problem = _form_problem(ids, note, owner, need_note=action != "assign")
        if problem is None and action == "assign" and not owner:
            problem = "name the owner"
        if problem is not None:
            return PlainTextResponse(problem, status_code=400)
        try:
            await run_in_threadpool(self._bulk, ids, str(action), note, owner)
        except UnknownFinding:
            return self.render(request, "missing.html", {}, status=404)
        return self.redirect(request, f"/findings?done={action}")

    def _bulk(self, ids: list[str], action: str, note: str, owner: str) -> None:
        now, page, actor = self.clock(), NoteSource.PAGE, queue.CONSOLE_ACTOR
        with self.sessions.begin() as session:
            if action == "assign":
                assign_findings(session, ids, owner, note, page, now, actor)
            else:
                close_findings(session, ids, CLOSE_ACTIONS[action], note, page, now, actor)

    async def act(self, request: Request) -> Response:
        form, refused = await self._checked_form(request)
        if refused is not None:
            return refused
        finding_id = request.path_params["finding_id"]
        action, note, owner = form.get("action"), _text(form.get("note")), _text(form.get("owner"))
        if action not in queue.FINDING_ACTIONS:
            return PlainTextResponse("choose assign, comment or reopen", status_code=400)
        problem = _form_problem([finding_id], note, owner, need_note=action != "assign")
        if problem is None and action == "assign" and not owner:
            problem = "name the owner"
        if problem is not None:
            return PlainTextResponse(problem, status_code=400)
        try:
            await run_in_threadpool(self._act, finding_id, str(action), note, owner)
        except UnknownFinding:
            return self.render(request, "missing.html", {}, status=404)
        return self.redirect(request, f"/findings/{quote(finding_id)}")

    def _act(self, finding_id: str, action: str, note: str, owner: str) -> None:
        now, page, actor = self.clock(), NoteSource.PAGE, queue.CONSOLE_ACTOR
        with self.sessions.begin() as session:
            if action == "assign":
                assign_findings(session, [finding_id], owner, note, page, now, actor)
            elif action == "reopen":
                reopen_findings(session, [finding_id], note, page, now, actor)
            else:
                add_note(session, finding_id, NoteAction.COMMENTED, note, page, now, actor)

    async def correct_form(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.redirect(request, "/login")
        finding_id = request.path_params["finding_id"]
        confirmed = request.query_params.get("confirmed_error") == "1"
        try:
            the_plan = await run_in_threadpool(
                planned, self.sessions, finding_id, confirmed_error=confirmed
            )
        except UnknownFinding:
            return self.render(request, "missing.html", {}, status=404)
        context = {
            "finding_id": finding_id,
            "plan": the_plan,
            "confirmation": confirmation(the_plan),
            "confirmed_error": confirmed,
            "can_post": self.tools.corrector is not None,
            "outcome": None,
        }
        return self.render(request, "correct.html", context)

    async def correct(self, request: Request) -> Response:
        form, refused = await self._checked_form(request)
        if refused is not None:
            return refused
        finding_id = request.path_params["finding_id"]
        note, confirmed = _text(form.get("note")), form.get("confirmed_error") == "1"
        problem = _form_problem([finding_id], note, "", need_note=True)
        if problem is not None:
            return PlainTextResponse(problem, status_code=400)
        corrector = self.tools.corrector
        if corrector is None:
            return PlainTextResponse(
                "corrections need MOESIF_MANAGEMENT_TOKEN where the page runs; nothing posted",
                status_code=409,
            )
        try:
            the_plan = await run_in_threadpool(
                planned, self.sessions, finding_id, confirmed_error=confirmed
            )
        except UnknownFinding:
            return self.render(request, "missing.html", {}, status=404)
        if not the_plan.postable:
            return PlainTextResponse(confirmation(the_plan), status_code=400)
        try:
            done = await run_in_threadpool(corrector, the_plan, note)
        except ReconcileError as error:
            log.warning("review page: a correction of %s stopped: %s", finding_id, error)
            return PlainTextResponse(f"nothing more was posted: {error}", status_code=409)
        context = {
            "finding_id": finding_id,
            "plan": the_plan,
            "confirmation": confirmation(the_plan),
            "confirmed_error": confirmed,
            "can_post": False,
            "outcome": done,
        }
        return self.render(request, "correct.html", context)

    async def _checked_form(self, request: Request) -> tuple[Any, Response | None]:
        """Return the posted form, or the answer refusing it (not signed in, bad CSRF)."""
        if not self.signed_in(request):
            return None, PlainTextResponse("sign in first", status_code=401)
        form = await request.form()
        if not _csrf_ok(request, form.get("csrf")):
            log.warning("review page: a form without a valid CSRF token was refused")
            return None, PlainTextResponse("the form has expired; reload the page", status_code=403)
        return form, None

    async def balances(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.redirect(request, "/login")
        context = await run_in_threadpool(self._balances_context)
        return self.render(request, "balances.html", context)

    def _balances_context(self) -> dict[str, Any]:
        path = _latest_balances(self.settings.report_dir)
        if path is not None:
            rows = _read_balances(path)
            source = f"from {path.name}"
        else:
            rows = self._computed_balances()
            source = (
                "computed from the snapshot, Moesif's figures as of each subscription's latest "
                "billing-report row (run `reconcile balances` for a check)"
            )
        view = balance_view(rows, self._subscription_currencies())
        return {
            "rows": view.rows,
            "mismatched": view.currency_mismatch,
            "source": source,
            "columns": [*BALANCE_COLUMNS[:3], "blocked", "owed", *BALANCE_COLUMNS[3:], "as_of"],
        }

    def _subscription_currencies(self) -> dict[str, str | None]:
        try:
            with self.sessions() as session:
                return reads.subscription_currencies(session)
        except SQLAlchemyError:
            log.exception("review page: subscription currencies could not be read")
            return {}

    def _computed_balances(self) -> list[dict[str, Any]]:
        try:
            with self.sessions() as session:
                snapshot = read_snapshot(session)
        except SQLAlchemyError:
            log.exception("review page: balances could not be read")
            return []
        # No check written yet: the balances after each subscription's latest row, as of then.
        rows = build_rows(snapshot, snapshot.row_balances(snapshot.subscriptions()))
        return [
            {
                **dict(zip(CSV_COLUMNS, csv_cells(row), strict=True)),
                "blocked_but_owed": row.blocked_but_owed,
            }
            for row in rows
        ]

    async def company(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.redirect(request, "/login")
        company_id = request.path_params["company_id"]
        subscriptions = await run_in_threadpool(self._subscriptions, company_id)
        if not subscriptions:
            return self.render(request, "missing.html", {"what": "company"}, status=404)
        window = statements.window_of("", "", self.clock())
        context = {"company_id": company_id, "subscriptions": subscriptions, "window": window}
        return self.render(request, "company.html", context)

    def _subscriptions(self, company_id: str) -> list[tuple[str, str]]:
        with self.sessions() as session:
            return statements.subscriptions_of(session, company_id)

    async def statement(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.redirect(request, "/login")
        params = request.query_params
        company_id = request.path_params["company_id"]
        window = statements.window_of(
            params.get("since", ""), params.get("until", ""), self.clock()
        )
        if window.error:
            context = {"company_id": company_id, "error": window.error}
            return self.render(request, "statement.html", context, status=400)
        subscription = params.get("subscription") or None
        try:
            heading, statement = await run_in_threadpool(
                self._statement, company_id, subscription, window
            )
        except UnknownCompany as error:
            context = {"company_id": company_id, "error": str(error)}
            return self.render(request, "statement.html", context, status=404)
        if params.get("format") == "csv":
            name = statements.download_name(heading)
            response = Response(
                statements.csv_text(statement),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
            response.headers.update(SECURITY_HEADERS)
            return response
        context = {
            "company_id": company_id,
            "heading": heading,
            "columns": statements.COLUMNS,
            "rows": statements.table_of(statement),
            "tie_out": statements.tie_out_lines(statement),
            "ties_out": statement.tie_out.ties_out,
            "error": "",
        }
        return self.render(request, "statement.html", context)

    def _statement(
        self, company_id: str, subscription: str | None, window: statements.Window
    ) -> tuple[Any, Any]:
        with self.sessions() as session:
            return statements.statement_of(session, company_id, subscription, window)


OWED_COLOUR = "#d62728"
"""The line of what customers are owed (under-credited): above zero."""
OVER_COLOUR = "#1f77b4"
"""The line of what Moesif holds too much (over-credited): below zero."""


def _currency_chart(moments: list[datetime], line: reads.CurrencyDrift) -> Chart:
    """Return one currency's drift chart: owed to customers and over-credited as two lines."""
    code = line.currency

    def written(value: Decimal) -> str:
        return signed_text(to_minor(value, code), code)

    return build_signed_chart(
        moments,
        [
            ("owed to customers (under-credited)", OWED_COLOUR, line.owed),
            ("over-credited (Moesif holds too much)", OVER_COLOUR, line.over),
        ],
        written,
    )


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _form_problem(ids: list[str], note: str, owner: str, *, need_note: bool) -> str | None:
    """Return why a queue form's values cannot be stored, or ``None``."""
    if need_note and not note:
        return f"a note of 1 to {MAX_NOTE} characters is needed"
    if len(note) > MAX_NOTE or len(owner) > 200:
        return f"a note of at most {MAX_NOTE} characters and an owner of at most 200"
    for value in (note, owner, *ids):
        problem = text_problem(value)
        if problem is not None:
            return f"the form cannot be stored: {problem}"
    return None


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def relative_location(base: str, path: str) -> str:
    """Return a redirect target on this server: one leading slash, never a scheme or host.

    ``base`` is where the page is mounted; ``//evil.example`` or a backslash could make a
    browser leave the server, so leading slashes and backslashes collapse to one slash.
    """
    target = (base + "/" + path.lstrip("/")).replace("\\", "/")
    return "/" + target.lstrip("/")


def _csrf_ok(request: Request, offered: object) -> bool:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not isinstance(offered, str) or not expected:
        return False
    return hmac.compare_digest(expected.encode(), offered.encode())


def _latest_balances(report_dir: Path) -> Path | None:
    found = sorted(report_dir.glob("balances-*.csv")) if report_dir.is_dir() else []
    return found[-1] if found else None


def _read_balances(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows: list[dict[str, Any]] = list(csv.DictReader(handle))
    for row in rows:
        row["blocked_but_owed"] = _positive(row.get("delta")) and not _positive(
            row.get("available_balance"), empty=True
        )
    return rows


def _positive(text: object, empty: bool = False) -> bool:
    if not isinstance(text, str) or not text:
        return empty
    try:
        return Decimal(text) > 0
    except InvalidOperation:
        return False
