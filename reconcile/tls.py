"""The one TLS context every HTTP client of the process verifies servers with."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Return the context an ``httpx.Client`` builds for itself, built once for the process.

    The same trusted roots (certifi's, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set): loading
    them took 35 ms a client, and a run over connected accounts opens clients per account. An
    ``SSLContext`` is safe to share between clients and threads.
    """
    return httpx.create_ssl_context()
