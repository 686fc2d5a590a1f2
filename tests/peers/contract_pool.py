"""A contract certificate pool (VDE-AR-E 2802-100-1), the secondary actor of OCPP 2.0.1
M01/M02: a real HTTP(S) server on loopback speaking the wire format of
:mod:`plugstream.cloud.certificates.contract_pool`.

What a pool does: a mobility operator deposits, per EV, the signed
CertificateInstallationRes it made for that EV's request; a CPO asks with the EV's EXI
request and gets that answer back. Here a test deposits a base64 blob under the sha256 of
the exiRequest's bytes (a real pool keys on the PCID / eMAID inside the EXI, which needs a
codec this test has no use for); a request with no deposit gets 404. The pool also fails
on demand (``fail_with`` a status) or holds requests unanswered until released
(``hold``), as a pool that is down or slow does.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support import WAIT

__all__ = ["ContractCertificatePool", "contract_pool", "key_of"]

MAX_BODY = 64 * 1024


def key_of(exi_request: str) -> str:
    """The key a deposit is kept under: the sha256 of the EXI request's bytes."""
    return hashlib.sha256(base64.b64decode(exi_request)).hexdigest()


@dataclass
class Received:
    """One request the pool was sent: its JSON and its Authorization header."""

    body: dict[str, Any]
    authorization: str | None


class ContractCertificatePool:
    """The pool's state, shared by its request threads."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.deposits: dict[str, str] = {}
        self.received: list[Received] = []
        self.fail_with: int | None = None
        self.hold = False
        self.held = 0  # requests waiting for release() now
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.url = ""

    def deposit(self, exi_request: str, exi_response: str) -> None:
        """The operator uploads ``exi_response`` for the EV that sends ``exi_request``."""
        with self._lock:
            self.deposits[key_of(exi_request)] = exi_response

    def release(self) -> None:
        """Let every held request go on (answered as if never held)."""
        self._released.set()

    def answer(self, body: bytes, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The status and JSON for one POST (blocking while held)."""
        try:
            request = json.loads(body)
            exi = request["exiRequest"]
            key = key_of(exi)
            assert request["action"] in ("Install", "Update")
            assert isinstance(request["iso15118SchemaVersion"], str)
        except (ValueError, KeyError, TypeError, AssertionError):
            return HTTPStatus.BAD_REQUEST, {"error": "not a certificate request"}
        with self._lock:
            self.received.append(Received(request, authorization))
        if self.hold:
            with self._lock:
                self.held += 1
            self._released.wait(WAIT)
            with self._lock:
                self.held -= 1
        if self.token is not None and authorization != f"Bearer {self.token}":
            return HTTPStatus.UNAUTHORIZED, {"error": "who are you?"}
        if self.fail_with is not None:
            return self.fail_with, {"error": "the pool is having a bad day"}
        with self._lock:
            found = self.deposits.get(key)
        if found is None:
            return HTTPStatus.NOT_FOUND, {"error": "no contract deposited for this EV"}
        return HTTPStatus.OK, {"exiResponse": found}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "too large"})
            return
        body = self.rfile.read(length)
        status, answer = self.server.pool.answer(body, self.headers.get("Authorization"))
        self._send(status, answer)

    def _send(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pool: ContractCertificatePool, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pool = pool
        self.tls = tls

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:  # the handshake in the request's own thread, on first read
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that refuses the pool's certificate is what a test wants."""
        return None


@contextlib.contextmanager
def contract_pool(
    *, tls: tuple[Path, Path] | None = None, token: str | None = None
) -> Iterator[ContractCertificatePool]:
    """A pool listening on 127.0.0.1 for the body, over TLS with ``tls`` (certificate and
    key, PEM), asking for ``token`` if one is given; held requests released and the
    server stopped after."""
    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
    pool = ContractCertificatePool(token)
    server = _Server(pool, context)
    scheme = "https" if tls is not None else "http"
    pool.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/v1/ccp/certificates"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield pool
    finally:
        pool.release()
        server.shutdown()
        server.server_close()
        thread.join(WAIT)
