"""How much and how slowly a client may send ``serve``: the ASGI and uvicorn side of the limits.

:class:`BoundedRequests` counts a body while the app reads it and answers 413 as soon as it
passes :data:`~reconcile.serve.untrusted.MAX_BODY` (the rest is never read); :func:`server_config`
gives uvicorn a protocol that drops a connection whose request is not complete within
:data:`~reconcile.serve.untrusted.READ_TIMEOUT`. Neither depends on what the routes do.
"""

from __future__ import annotations

import asyncio
import json
import logging

import uvicorn
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from reconcile.serve.untrusted import MAX_BODY, READ_TIMEOUT

log = logging.getLogger(__name__)


class BodyTooLarge(HTTPException):
    """The body being read has passed the limit, raised out of ``receive``.

    An ``HTTPException``, so that whichever Starlette app is reading (the mounted review page
    has its own error handling) answers it as 413 and closes the connection;
    :func:`too_large` answers it as JSON.
    """

    def __init__(self, limit: int) -> None:
        """Say what the limit is."""
        super().__init__(
            413, f"the body is larger than {limit} bytes", headers={"connection": "close"}
        )


class BoundedRequests:
    """ASGI middleware: bodies over ``max_body`` refused while read; NUL in a path refused.

    A body declared larger (``Content-Length``) is refused before the app runs; one sent in
    chunks is refused when the chunk that passes the limit arrives, so the app never holds more
    than ``max_body`` plus one chunk. Both answers close the connection, so the rest of the body
    is never read. A client that disconnects mid-body ends its request without a traceback.
    """

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        """Wrap ``app``."""
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request within the limits."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _refuse(send, *refusal)
            return
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _refuse(send, 413, f"the body is larger than {self.max_body} bytes")
        except ClientDisconnect:
            log.info("a client went away before its request was complete")

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        """Return the answer a request earns before its body is read, or ``None``."""
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            return 413, f"the body is larger than {self.max_body} bytes"
        if "\x00" in scope["path"] or b"%00" in bytes(scope.get("query_string", b"")):
            return 400, "the URL contains a NUL character"
        return None


async def too_large(_request: Request, exc: Exception) -> Response:
    """Answer :class:`BodyTooLarge` as JSON ``{"error"}``, closing the connection."""
    detail = exc.detail if isinstance(exc, HTTPException) else "the body is too large"
    return JSONResponse({"error": detail}, status_code=413, headers={"connection": "close"})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = bytes(value).decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on each request (:func:`bounded_protocol`)."""

    read_timeout: float = READ_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None
    _answered: RequestResponseCycle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the first request's clock."""
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        """Stop the clock once a new request has arrived whole."""
        super().handle_events()
        cycle = self.cycle
        if cycle is not None and cycle is not self._answered and not cycle.more_body:
            self._disarm()

    def on_response_complete(self) -> None:
        """Start the next request's clock."""
        self._answered = self.cycle
        self._arm()
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._drop)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _drop(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("dropped a connection whose request was not whole in %ss", self.read_timeout)
            self.transport.close()


def bounded_protocol(read_timeout: float = READ_TIMEOUT) -> type[H11Protocol]:
    """Return uvicorn's HTTP/1.1 protocol with a deadline on each request.

    A connection has ``read_timeout`` seconds from when it opens (or from its previous answer)
    until the request it carries, headers and body, has arrived whole; then it is closed. A
    client that sends slowly, or stops halfway, holds a connection no longer than that.
    """
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"read_timeout": read_timeout})


def server_config(
    app: ASGIApp, host: str, port: int, read_timeout: float = READ_TIMEOUT
) -> uvicorn.Config:
    """Return uvicorn's configuration for ``serve``: its own logging, the request deadline."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        http=bounded_protocol(read_timeout),
    )
