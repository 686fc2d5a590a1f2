"""The cloud's OCSP responder (RFC 6960 over HTTP, appendix A: POST of the DER request, or
GET of its base64 in the path) for the V2G certificates its PKI issued, and the OCSP
client with which the cloud asks a responder a station or an EV named (M06, C07).

The responder is outside the bearer guard: OCSP clients send no token. It answers for
the V2G root (about its sub-CA) and the sub-CA (about the leaves): good for what the
store recorded as issued, revoked once revoked, unknown for any other serial, and
``unauthorized`` for an issuer that is not ours.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

from cryptography.x509 import ocsp
from fastapi import APIRouter, Request, Response

from plugstream.cloud.api.common import get_config, get_store
from plugstream.cloud.certificates.v2g import OCSP_PATH, v2g_authority
from plugstream.pki.ocsp import (
    CertStatus,
    OcspAnswer,
    OcspFailure,
    build_response,
    error_response,
    find_issuer,
    key_id,
    parse_request,
)

if TYPE_CHECKING:
    from plugstream.cloud.config import CloudConfig
    from plugstream.cloud.storage import Store

__all__ = ["OCSP_TIMEOUT", "fetch_ocsp", "ocsp_answer", "router"]

log = logging.getLogger("plugstream.cloud.ocsp")

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
OCSP_TIMEOUT = 10.0  # s: a station waits for the answer to its CALL (M06, C07)
MAX_RESPONSE_BYTES = 64 * 1024  # an OCSP response is a few hundred bytes; more is not one
MAX_REQUEST_BYTES = 8 * 1024


async def ocsp_answer(store: Store, config: CloudConfig, der: bytes, now: dt.datetime) -> bytes:
    """The DER OCSPResponse to a DER OCSPRequest: sans HTTP, for the route and tests."""
    try:
        request = parse_request(der)
    except OcspFailure:
        return error_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    authority = v2g_authority(config, now)
    issuer = None if authority is None else find_issuer(request, (authority.root, authority.sub_ca))
    if authority is None or issuer is None:
        return error_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    serial = request.serial_number
    record = await store.certificate_status.get(key_id(issuer.certificate), serial)
    if record is None and issuer is authority.root:
        if serial == authority.sub_ca.certificate.serial_number:  # the PKI's own sub-CA
            answer = OcspAnswer(CertStatus.GOOD)
        else:
            answer = OcspAnswer(CertStatus.UNKNOWN)
    elif record is None:
        answer = OcspAnswer(CertStatus.UNKNOWN)
    elif record.revoked_at is not None:
        answer = OcspAnswer(CertStatus.REVOKED, record.revoked_at, record.revocation_reason)
    else:
        answer = OcspAnswer(CertStatus.GOOD)
    return build_response(request, issuer, answer, now)


def _clock(request: Request) -> dt.datetime:
    gateway = getattr(request.app.state, "gateway", None)
    now = getattr(gateway, "clock", None)  # the cloud's clock, as the handlers see it
    if callable(now):
        found = now()
        if isinstance(found, dt.datetime):
            return found
    return dt.datetime.now(dt.UTC)


router = APIRouter(tags=["OCSP"])


def _ocsp_response(der: bytes) -> Response:
    return Response(content=der, media_type=OCSP_RESPONSE)


@router.post(
    OCSP_PATH,
    response_class=Response,
    responses={200: {"content": {OCSP_RESPONSE: {}}, "description": "DER OCSPResponse"}},
    openapi_extra={
        "requestBody": {"content": {OCSP_REQUEST: {}}, "required": True},
    },
)
async def ocsp_post(request: Request) -> Response:
    """RFC 6960 A.1.1: the DER OCSPRequest as the body. No bearer token: OCSP clients
    send none. A malformed request gets an OCSPResponse of malformedRequest."""
    body = await request.body()
    if len(body) > MAX_REQUEST_BYTES:
        return _ocsp_response(error_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
    store = await get_store(request)
    config = await get_config(request)
    return _ocsp_response(await ocsp_answer(store, config, body, _clock(request)))


@router.get(
    OCSP_PATH + "/{encoded:path}",
    response_class=Response,
    responses={200: {"content": {OCSP_RESPONSE: {}}, "description": "DER OCSPResponse"}},
)
async def ocsp_get(encoded: str, request: Request) -> Response:
    """RFC 6960 A.1.1: GET of the URL-encoded base64 of the DER OCSPRequest."""
    try:
        der = base64.b64decode(urllib.parse.unquote(encoded), validate=True)
    except (binascii.Error, ValueError):
        return _ocsp_response(error_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
    store = await get_store(request)
    config = await get_config(request)
    return _ocsp_response(await ocsp_answer(store, config, der, _clock(request)))


# -- the client --------------------------------------------------------------------------


def _post(url: str, der: bytes, timeout: float) -> bytes:
    request = urllib.request.Request(
        url,
        data=der,
        method="POST",
        headers={"Content-Type": OCSP_REQUEST, "Accept": OCSP_RESPONSE},
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        data: bytes = answer.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise OcspFailure(f"{url}: answer over {MAX_RESPONSE_BYTES} bytes")
    return data


async def fetch_ocsp(url: str, der: bytes, *, timeout: float = OCSP_TIMEOUT) -> bytes:
    """POST ``der`` to the OCSP responder at ``url`` (http or https only) and return its
    DER answer; OcspFailure naming the URL on any failure or after ``timeout`` seconds."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise OcspFailure(f"responder URL {url!r} is not http(s)")
    try:
        return await asyncio.wait_for(asyncio.to_thread(_post, url, der, timeout), timeout + 1)
    except TimeoutError:
        raise OcspFailure(f"{url}: no answer within {timeout:g} s") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise OcspFailure(f"{url}: {exc}") from None
