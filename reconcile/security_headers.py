"""The headers every answer of ``serve`` carries, and the ASGI middleware that adds them.

One place for them, so that a page, a 404, a 429, a 413 and a failure all carry the same
headers: no scripts, no framing, no sniffing, no caching, no referrer. The server and the review
page both wrap themselves in :class:`SecurityHeaders`; neither imports the other.
"""

from __future__ import annotations

import logging

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Set on every answer, replacing any the route set."""


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every HTTP answer, failures included.

    A failure before the answer started is logged and answered 500 here, with the headers, so
    no answer leaves without them; one after it started goes on up as it came.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, adding the headers to its answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except ClientDisconnect:
            raise
        except Exception:
            if started:
                raise
            log.exception("an answer failed before it started")
            failed = PlainTextResponse("the server failed; its log says why", status_code=500)
            await failed(scope, receive, with_headers)
