"""The client of a contract certificate pool (OCPP 2.0.1 M01/M02, VDE-AR-E 2802-100-1):
where the CSMS forwards the EV's EXI CertificateInstallationReq / CertificateUpdateReq
that a station sent in Get15118EVCertificate, and gets back the CertificateInstallationRes
(or CertificateUpdateRes) that the mobility operator signed for that EV.

The CSMS neither decodes nor signs EXI: it hands the base64 through, as a CPO does with
Hubject's CCP. The wire format, one HTTPS POST to the configured URL:

- request: ``Content-Type: application/json``, ``Authorization: Bearer TOKEN`` when a
  token is configured, body
  ``{"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install" | "Update",
  "exiRequest": BASE64}``, the three fields of Get15118EVCertificateRequest unchanged;
- answer 200: ``{"exiResponse": BASE64}``, the raw EXI response for the EV;
- any other status is an error: 404 says the pool holds nothing for this EV, any other
  one that it failed; a JSON body ``{"error": TEXT}`` says why, if it likes.

The EV waits 5 s for its answer (ISO 15118-2), so the whole exchange has a deadline of
:data:`POOL_TIMEOUT` (4 s), and an answer larger than :data:`MAX_ANSWER_BYTES` is refused
unread. Redirects are not followed: one would take the bearer token elsewhere. The URL
must be https, but for a loopback host (a local TLS-terminating proxy, tests); TLS is
verified against the configured CA file, else the system's store.

The parts that need no socket (:func:`check_pool_url`, :func:`encode_request`,
:func:`read_answer`) are plain functions; :func:`forward` does the HTTP with urllib in a
thread, as the OCSP client (:mod:`.ocsp`) does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http.client
import ipaddress
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_EXI_REQUEST",
    "MAX_EXI_RESPONSE",
    "POOL_TIMEOUT",
    "ContractPool",
    "ContractPoolFailure",
    "check_pool_token",
    "check_pool_url",
    "encode_request",
    "forward",
    "read_answer",
]

log = logging.getLogger("plugstream.cloud.contract_pool")

#: s the whole exchange with the pool may take: under the EV's 5 s (ISO 15118-2
#: CertificateInstallationReq / CertificateUpdateReq), leaving the station time to relay
POOL_TIMEOUT = 4.0
#: the schema's maxLength of Get15118EVCertificateRequest.exiRequest
MAX_EXI_REQUEST = 5600
#: the schema's maxLength of Get15118EVCertificateResponse.exiResponse: a longer one
#: could not be sent to the station
MAX_EXI_RESPONSE = 7500
#: bytes of the pool's HTTP body read at most: the JSON around the largest exiResponse
MAX_ANSWER_BYTES = 16 * 1024
#: characters of an error the pool gave that are kept (additionalInfo is 512 at most)
MAX_DETAIL = 200

JSON = "application/json"


class ContractPoolFailure(Exception):
    """The pool gave no exiResponse: ``reason_code`` for the statusInfo (20 characters at
    most), the message for its additionalInfo."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True, slots=True)
class ContractPool:
    """Where and how to reach the pool: its URL (see :func:`check_pool_url`), the bearer
    token, the CA file (PEM) its TLS certificate must chain to (None: the system's
    store), and the deadline of one exchange in seconds."""

    url: str
    token: str | None = None
    ca_file: Path | None = None
    timeout: float = POOL_TIMEOUT


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_pool_url(url: str) -> str:
    """``url`` if a pool may be reached there, else ValueError saying why in one line:
    https with a host, or http to a loopback host; no user or password in it (the
    token has its own setting)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a port that is not one
    except ValueError as exc:
        raise ValueError(f"not a URL: {url!r} ({exc})") from None
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if scheme not in ("https", "http") or not host:
        raise ValueError(f"use https://HOST/PATH, not {url!r}")
    if scheme == "http" and not _is_loopback(host):
        raise ValueError(f"use https:// for a pool that is not on this host, not {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("no credentials in the URL: the bearer token has its own setting")
    if port == 0:
        raise ValueError(f"not a port: 0 in {url!r}")
    return url


def check_pool_token(token: str) -> str:
    """``token`` if it can go in an HTTP header as it is (printable ASCII, no spaces),
    else ValueError."""
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError("the token must be printable ASCII without spaces")
    return token


def encode_request(iso15118_schema_version: str, action: str, exi_request: str) -> bytes:
    """The JSON body for the pool, of the fields of a Get15118EVCertificateRequest;
    ContractPoolFailure if the exiRequest is not base64 of at most the schema's length,
    which no pool could take."""
    if len(exi_request) > MAX_EXI_REQUEST:
        raise ContractPoolFailure(
            "TooLargeElement", f"exiRequest over {MAX_EXI_REQUEST} characters"
        )
    if not _is_base64(exi_request):
        raise ContractPoolFailure("InvalidValue", "exiRequest is not base64")
    return orjson.dumps(
        {
            "iso15118SchemaVersion": iso15118_schema_version,
            "action": action,
            "exiRequest": exi_request,
        }
    )


def _is_base64(text: str) -> bool:
    try:
        return bool(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return False


def _detail(body: bytes) -> str:
    """What the pool said about an error: its JSON ``error``, else the start of its text,
    printable characters only."""
    text: Any = None
    try:
        data = orjson.loads(body)
        if isinstance(data, dict):
            text = data.get("error")
    except orjson.JSONDecodeError:
        pass
    if not isinstance(text, str):
        text = body.decode("utf-8", "replace")
    clean = "".join(c if c.isprintable() else " " for c in text).strip()
    return clean[:MAX_DETAIL]


def read_answer(status: int, body: bytes) -> str:
    """The exiResponse of the pool's answer (HTTP ``status``, ``body``), else
    ContractPoolFailure: NotFound for 404 (no certificate for this EV), PoolError for any
    other status or an answer that is no base64 exiResponse the station could be sent."""
    if status == 404:
        detail = _detail(body)
        raise ContractPoolFailure(
            "NotFound",
            "the pool holds no certificate for this EV" + (f": {detail}" if detail else ""),
        )
    if status != 200:
        detail = _detail(body)
        raise ContractPoolFailure(
            "PoolError", f"the pool answered HTTP {status}" + (f": {detail}" if detail else "")
        )
    if len(body) > MAX_ANSWER_BYTES:
        raise ContractPoolFailure(
            "PoolError", f"the pool's answer is over {MAX_ANSWER_BYTES} bytes"
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ContractPoolFailure("PoolError", "the pool's answer is not JSON") from None
    exi = data.get("exiResponse") if isinstance(data, dict) else None
    if not isinstance(exi, str) or not exi:
        raise ContractPoolFailure("PoolError", "the pool's answer has no exiResponse")
    if len(exi) > MAX_EXI_RESPONSE:
        raise ContractPoolFailure(
            "PoolError", f"the pool's exiResponse is over {MAX_EXI_RESPONSE} characters"
        )
    if not _is_base64(exi):
        raise ContractPoolFailure("PoolError", "the pool's exiResponse is not base64")
    return exi


# -- the HTTP -------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is the pool's answer, an error: following it would send the token on."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification of the pool's certificate and name: against ``ca_file`` only, when
    given, else the system's store."""
    if ca_file is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(ca_file))


def _post(pool: ContractPool, body: bytes) -> tuple[int, bytes]:
    """One blocking POST (in a thread): the status and at most MAX_ANSWER_BYTES + 1 of the
    body, an error status's included."""
    headers = {"Content-Type": JSON, "Accept": JSON}
    if pool.token:
        headers["Authorization"] = f"Bearer {pool.token}"
    request = urllib.request.Request(pool.url, data=body, method="POST", headers=headers)
    opener = urllib.request.build_opener(
        _NoRedirect(), urllib.request.HTTPSHandler(context=_tls_context(pool.ca_file))
    )
    try:
        with opener.open(request, timeout=pool.timeout) as answer:
            return int(answer.status), answer.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(MAX_ANSWER_BYTES + 1)


async def forward(
    pool: ContractPool, iso15118_schema_version: str, action: str, exi_request: str
) -> str:
    """The pool's exiResponse to the EV's ``exi_request``; ContractPoolFailure within
    ``pool.timeout`` seconds otherwise: PoolTimeout, PoolUnreachable (no connection, TLS
    refused), or what :func:`encode_request` and :func:`read_answer` say.

    The thread of a request past its deadline is left to end on its socket timeout (the
    same one): the answer to the station does not wait for it."""
    body = encode_request(iso15118_schema_version, action, exi_request)
    try:
        status, answer = await asyncio.wait_for(asyncio.to_thread(_post, pool, body), pool.timeout)
    except TimeoutError:  # the deadline, or the socket's (the same one) just before it
        raise _timed_out(pool) from None
    except urllib.error.URLError as exc:  # connecting failed: refused, no name, TLS
        if isinstance(exc.reason, TimeoutError):
            raise _timed_out(pool) from None
        raise ContractPoolFailure(
            "PoolUnreachable", f"the pool is unreachable: {exc.reason}"
        ) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, not HTTP, ...
        raise ContractPoolFailure("PoolUnreachable", f"the pool is unreachable: {exc!r}") from None
    return read_answer(status, answer)


def _timed_out(pool: ContractPool) -> ContractPoolFailure:
    return ContractPoolFailure("PoolTimeout", f"the pool gave no answer within {pool.timeout:g} s")
