"""The little HTTP server each fake answers on: 127.0.0.1, a free port, a daemon thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server read it: method, target (path and query), headers, body."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    """What to send back: status, headers and body, or nothing at all (``drop``).

    The server adds ``Content-Length``; every other header, ``Content-Type`` included, is the
    fake's to choose.
    """

    status: int
    body: bytes = b""
    headers: Sequence[tuple[str, str]] = ()
    drop: bool = False
    """Close the connection without an answer, as a server that dies mid-request would."""


Responder = Callable[[Request], Reply]
"""A fake's whole behaviour as the server sees it: one request in, one reply out."""


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP/1.1 server on a free port of 127.0.0.1 that hands every request to a responder.

    Quiet on stderr: no request log, and a client going away mid-answer (which the tests do on
    purpose) is logged at debug level only.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        name: str,
        respond: Responder,
        *,
        methods: Collection[str] = ("GET", "POST", "PUT", "DELETE"),
        idle_timeout: float | None = None,
    ) -> None:
        """Bind to a free port; nothing is served until :meth:`start`.

        ``methods`` are those handed to ``respond``; any other is answered 501 by the server.
        ``idle_timeout`` closes a connection that sends nothing for that many seconds.
        """
        super().__init__(("127.0.0.1", 0), _handler(methods, idle_timeout))
        self.name = name
        self.respond = respond
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=self.name.replace(" ", "-").lower(),
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()

    def handle_error(self, request: object, client_address: object) -> None:
        """Log at debug level only: a client going away mid-answer is part of the tests."""
        logger.debug("%s: a client went away mid-request", self.name, exc_info=True)


def _handler(methods: Collection[str], idle_timeout: float | None) -> type[BaseHTTPRequestHandler]:
    allowed = frozenset(methods)

    class Handler(BaseHTTPRequestHandler):
        """Reads one request, asks the responder, writes its reply (or drops the connection)."""

        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        timeout = idle_timeout
        wbufsize = -1  # headers and body leave in one write, flushed after each request
        server: LoopbackServer

        def do_GET(self) -> None:  # noqa: N802
            """Answer a GET."""
            self._exchange()

        def do_POST(self) -> None:  # noqa: N802
            """Answer a POST."""
            self._exchange()

        def do_PUT(self) -> None:  # noqa: N802
            """Answer a PUT."""
            self._exchange()

        def do_DELETE(self) -> None:  # noqa: N802
            """Answer a DELETE."""
            self._exchange()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Stay quiet: tests and the demo own the terminal."""

        def _exchange(self) -> None:
            if self.command not in allowed:
                self.send_error(501, f"Unsupported method ({self.command!r})")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name: value for name, value in self.headers.items()}
            reply = self.server.respond(Request(self.command, self.path, headers, body))
            if reply.drop:
                self.close_connection = True
                return
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

    return Handler
