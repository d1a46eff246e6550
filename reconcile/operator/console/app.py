"""The review page as a Starlette application: login, runs, findings, closing them, balances.

Everything is rendered on the server by Jinja2 with autoescaping on for every template, so a
value from Stripe or Moesif (a company id of ``<script>…``) is shown as text. A login with
``RECONCILE_CONSOLE_TOKEN`` starts a session (a cookie signed with a key derived from the token,
HttpOnly, SameSite=Strict); each session carries a CSRF token that every form posts back.
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

from jinja2 import Environment, PackageLoader
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from reconcile import live_path
from reconcile.db.finding_states import (
    FindingFilter,
    FindingStatus,
    NoteSource,
    UnknownFinding,
    close_findings,
    get_finding,
    history_of,
    list_findings,
    notes_of,
)
from reconcile.money import format_major
from reconcile.operator.balances import BALANCE_COLUMNS, build_rows, read_snapshot
from reconcile.operator.console import reads
from reconcile.operator.console.chart import build_chart
from reconcile.operator.console.settings import SESSION_LIFETIME, ConsoleSettings
from reconcile.safe_text import text_problem

log = logging.getLogger(__name__)

SESSION_COOKIE = "reconcile_console"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
AGES = {"": None, "1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
"""The age filter's choices: findings first seen at least this long ago."""
CLOSE_ACTIONS = {"resolve": FindingStatus.RESOLVED, "ignore": FindingStatus.IGNORED}
MAX_NOTE = 2000


def create_console_app(
    settings: ConsoleSettings,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
) -> Starlette:
    """Return the review page; mount it at ``/``. Without a token every path answers 404.

    Args:
        settings: the token, the report directory (for the latest balances CSV), cookie flags.
        sessions: the snapshot database's session factory.
        clock: the current time (aware UTC), for ages and the time a finding is closed.
    """
    if settings.token is None:
        return Starlette(routes=[Route("/{path:path}", _off, methods=["GET", "POST"])])
    console = _Console(settings, sessions, clock)
    routes = [
        Route("/", console.runs, name="runs"),
        Route("/login", console.login_form, methods=["GET"], name="login"),
        Route("/login", console.login, methods=["POST"]),
        Route("/logout", console.logout, methods=["POST"], name="logout"),
        Route("/findings", console.findings, name="findings"),
        Route("/findings/{finding_id}", console.finding, name="finding"),
        Route("/findings/{finding_id}/close", console.close, methods=["POST"], name="close"),
        Route("/balances", console.balances, name="balances"),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=settings.session_key(),
            session_cookie=SESSION_COOKIE,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            same_site="strict",
            https_only=settings.secure_cookies,
        )
    ]
    return Starlette(routes=routes, middleware=middleware)


def _off(request: Request) -> Response:
    return PlainTextResponse("the review page is off (RECONCILE_CONSOLE_TOKEN is not set)", 404)


def _templates() -> Jinja2Templates:
    # Autoescape every template, whatever its name: all values are text to show, never markup.
    environment = Environment(loader=PackageLoader("reconcile.operator.console"), autoescape=True)
    environment.filters["major"] = _major
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
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.templates = _templates()

    # Rendering and the session.

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        context = {**context, "csrf": request.session.get("csrf", ""), "base": _base(request)}
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(SECURITY_HEADERS)
        return response

    def redirect(self, request: Request, path: str) -> Response:
        response = RedirectResponse(_base(request) + path, status_code=303)
        response.headers.update(SECURITY_HEADERS)
        return response

    @staticmethod
    def signed_in(request: Request) -> bool:
        return request.session.get("operator") is True

    # Login.

    def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", {"error": ""})

    async def login(self, request: Request) -> Response:
        form = await request.form()
        offered = form.get("token")
        if not isinstance(offered, str) or not self.settings.token_matches(offered.strip()):
            log.warning("review page: a login with a wrong token")
            return self.render(request, "login.html", {"error": "That token is not right."}, 401)
        request.session.clear()
        request.session.update({"operator": True, "csrf": secrets.token_urlsafe(32)})
        return self.redirect(request, "/")

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if self.signed_in(request) and _csrf_ok(request, form.get("csrf")):
            request.session.clear()
        return self.redirect(request, "/login")

    # Pages.

    async def runs(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.redirect(request, "/login")
        context = await run_in_threadpool(self._runs_context)
        return self.render(request, "runs.html", context)

    def _runs_context(self) -> dict[str, Any]:
        with self.sessions() as session:
            runs = reads.recent_runs(session)
            drift = reads.drift_over_time(session, runs)
            missed = live_path.measure(session, self.clock())
        return {
            "runs": runs,
            "miss_rate": missed,
            "count_chart": build_chart(drift.moments, drift.counts),
            "amount_chart": build_chart(drift.moments, drift.amounts),
        }

    async def findings(self, request: Request) -> Response:
        if not self.signed_in(request):
            return self.redirect(request, "/login")
        params = request.query_params
        chosen = {
            "category": params.get("category", ""),
            "company": params.get("company", "").strip(),
            "age": params.get("age", "") if params.get("age", "") in AGES else "",
            "sort": "age" if params.get("sort") == "age" else "amount",
        }
        where = FindingFilter(
            categories=(chosen["category"],) if chosen["category"] else (),
            companies=(chosen["company"],) if chosen["company"] else (),
            older_than=AGES[chosen["age"]],
            largest_first=chosen["sort"] == "amount",
            limit=500,
        )
        states = await run_in_threadpool(self._list, where)
        context = {
            "states": states,
            "chosen": chosen,
            "categories": sorted({"", *(s.category for s in states), chosen["category"]}),
            "ages": list(AGES),
            "closed": params.get("closed", ""),
        }
        return self.render(request, "findings.html", context)

    def _list(self, where: FindingFilter) -> list[Any]:
        with self.sessions() as session:
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
            return {
                "state": state,
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
            close_findings(session, [finding_id], status, note, NoteSource.PAGE, self.clock())

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
            source = "computed from the snapshot (run `reconcile balances` for Moesif's figures)"
        return {"rows": rows, "source": source, "columns": BALANCE_COLUMNS}

    def _computed_balances(self) -> list[dict[str, Any]]:
        try:
            with self.sessions() as session:
                snapshot = read_snapshot(session)
        except SQLAlchemyError:
            log.exception("review page: balances could not be read")
            return []
        return [
            {
                "company_id": row.company_id,
                "subscription_id": row.subscription_id,
                "currency": row.currency,
                "stripe_net": _major(row.stripe_net_minor, row.currency),
                "moesif_net": _major(row.moesif_net_minor, row.currency),
                "delta": _major(row.delta_minor, row.currency),
                "open_findings": str(row.open_findings),
                "blocked_but_owed": False,
            }
            for row in build_rows(snapshot, {})
        ]


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


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
