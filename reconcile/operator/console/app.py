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

from reconcile.db.finding_states import (
    FindingFilter,
    UnknownFinding,
    close_findings,
    get_finding,
    history_of,
    list_findings,
    notes_of,
)
from reconcile.domain.money import format_major
from reconcile.domain.vocab import FindingStatus, NoteSource
from reconcile.errors import ConfigError
from reconcile.operator.balances import BALANCE_COLUMNS, build_rows, read_snapshot
from reconcile.operator.console import reads
from reconcile.operator.console.chart import build_chart
from reconcile.operator.console.login_guard import LoginGuard
from reconcile.operator.console.sessions import (
    SESSION_COOKIE,
    ServerSessions,
    SessionStore,
    session_id_of,
)
from reconcile.operator.console.settings import SESSION_LIFETIME, ConsoleSettings
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
MAX_NOTE = 2000


def create_console_app(
    settings: ConsoleSettings,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    store: SessionStore | None = None,
) -> Starlette:
    """Return the review page; mount it at ``/``. Without a token every path answers 404.

    Args:
        settings: the token, the report directory (for the latest balances CSV), cookie flags.
        sessions: the snapshot database's session factory.
        clock: the current time (aware UTC), for ages, sessions, login limits and closing.
        store: where sessions are kept (a new, empty one by default).

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
    console = _Console(settings, sessions, clock, store)
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
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.store = store
        self.guard = LoginGuard(settings.login_budget)
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
        with self.sessions() as session:
            runs = reads.recent_runs(session)
            drift = reads.drift_over_time(session, runs)
        return {
            "runs": runs,
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
