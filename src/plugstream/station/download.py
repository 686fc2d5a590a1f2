"""The station's HTTP/1.1 download client: resumable, and TLS checked by the station itself.

A firmware image is fetched with one GET per attempt into a partial file. When an
attempt is cut (the link drops, the process is killed) the bytes on disk stay, and the
next attempt asks for the rest with ``Range: bytes=N-``: a station on a metered or
flaky link must not pay twice for the first 90 % of an image. A ``206`` is accepted
only if its ``Content-Range`` starts at exactly ``N``; a ``200`` means the server
ignores ranges, so the file starts over from byte 0.

Over ``https`` the station's own TLS context (:func:`~plugstream.pki.tls.station_context`)
does the handshake and :func:`~plugstream.pki.tls.verify_server` checks the server's
chain against the station's CSMS roots and the station's clock *before* the request
is written (the same rule as for the OCPP connection, A00.FR.308-310). A server that
fails the check gets no request and nothing is written.

Head parsing is pure (:func:`parse_head`, :func:`parse_content_range`); the asyncio
shell is :func:`fetch`. Network timeouts are real seconds, like the OCPP connection's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from cryptography import x509

from plugstream.pki.tls import ServerRejected, peer_chain, station_context, verify_server

__all__ = [
    "DownloadError",
    "Fetched",
    "HttpHead",
    "fetch",
    "parse_content_range",
    "parse_head",
    "request_head",
]

CHUNK = 64 * 1024
MAX_HEAD = 32 * 1024
USER_AGENT = "PlugStream-Station"

T = TypeVar("T")


class DownloadError(Exception):
    """An attempt failed in a way a later attempt may not (cut link, HTTP error)."""


@dataclass(frozen=True, slots=True)
class HttpHead:
    """The status and headers (lower-case names) of an HTTP/1.1 response."""

    status: int
    reason: str
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True)
class Fetched:
    """A finished download: the file's size and whether this attempt resumed."""

    size: int
    resumed_from: int


def parse_head(raw: bytes) -> HttpHead:
    """Parse a response head (status line and headers, up to the blank line)."""
    try:
        text = raw.decode("iso-8859-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise DownloadError(f"unreadable response head: {exc}") from None
    lines = text.split("\r\n")
    match = re.fullmatch(r"HTTP/1\.[01] (\d{3})(?: (.*))?", lines[0])
    if match is None:
        raise DownloadError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise DownloadError(f"malformed header line {line[:80]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return HttpHead(int(match.group(1)), match.group(2) or "", headers)


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """``bytes first-last/total`` (total may be ``*``) -> (first, last, total or None)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value)
    if match is None:
        raise DownloadError(f"malformed Content-Range {value!r}")
    first, last = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if last < first or (total is not None and last >= total):
        raise DownloadError(f"inconsistent Content-Range {value!r}")
    return first, last, total


def request_head(host: str, port: int, default_port: int, target: str, offset: int) -> bytes:
    """The GET request for ``target``, asking for the bytes from ``offset`` when > 0."""
    authority = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        authority = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {authority}",
        f"User-Agent: {USER_AGENT}",
        "Accept-Encoding: identity",
        "Connection: close",
    ]
    if offset > 0:
        lines.append(f"Range: bytes={offset}-")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


async def _timed(awaitable: Awaitable[T], timeout: float) -> T:
    async with asyncio.timeout(timeout):
        return await awaitable


async def _copy_body(
    reader: asyncio.StreamReader,
    head: HttpHead,
    write: Callable[[bytes], object],
    timeout: float,
) -> int:
    """Copy the body to ``write``; the number of bytes. Raises DownloadError when cut."""
    copied = 0
    encoding = (head.header("transfer-encoding") or "").lower()
    if "chunked" in encoding:
        while True:
            line = await _timed(reader.readline(), timeout)
            if not line.endswith(b"\n"):
                raise DownloadError(f"connection closed after {copied} body bytes")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise DownloadError(f"malformed chunk size {line[:40]!r}") from None
            if size == 0:
                return copied
            left = size
            while left:
                data = await _timed(reader.read(min(CHUNK, left)), timeout)
                if not data:
                    raise DownloadError(f"connection closed after {copied} body bytes")
                write(data)
                copied += len(data)
                left -= len(data)
            if await _timed(reader.readline(), timeout) not in (b"\r\n", b"\n"):
                raise DownloadError("malformed chunk trailer")
    length_text = head.header("content-length")
    length = None if length_text is None else int(length_text)
    while length is None or copied < length:
        want = CHUNK if length is None else min(CHUNK, length - copied)
        data = await _timed(reader.read(want), timeout)
        if not data:
            if length is None:
                return copied
            raise DownloadError(f"connection closed after {copied} of {length} body bytes")
        write(data)
        copied += len(data)
    return copied


async def fetch(
    location: str,
    dest: Path,
    *,
    roots: Callable[[], list[x509.Certificate]],
    now: Callable[[], dt.datetime],
    timeout: float = 30.0,
    on_verified: Callable[[], None] | None = None,
) -> Fetched:
    """Download ``location`` into ``dest``, resuming from the bytes already in ``dest``.

    ``roots`` gives the trust anchors for an https server (the station's CSMS roots),
    ``now`` the station's clock for the check. Raises
    :class:`~plugstream.pki.tls.ServerRejected` when the server's certificate fails the
    check (nothing sent, nothing written) and :class:`DownloadError` for anything a
    retry may fix; ``dest`` then keeps the bytes that did arrive.
    """
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise DownloadError(f"unsupported file transfer protocol {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise DownloadError(f"no host in {location!r}")
    default_port = 443 if scheme == "https" else 80
    try:
        port = parts.port or default_port
    except ValueError:
        raise DownloadError(f"bad port in {location!r}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    offset = dest.stat().st_size if dest.exists() else 0

    context = station_context() if scheme == "https" else None
    try:
        reader, writer = await _timed(
            asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context is not None else None
            ),
            timeout,
        )
    except (OSError, TimeoutError) as exc:
        raise DownloadError(f"cannot connect to {host}:{port}: {exc}") from None
    try:
        if context is not None:
            # the station's check, by its own trust store and clock, before a byte is sent
            verify_server(peer_chain(writer.get_extra_info("ssl_object")), host, roots(), now())
        if on_verified is not None:
            on_verified()
        writer.write(request_head(host, port, default_port, target, offset))
        await _timed(writer.drain(), timeout)
        try:
            raw = await _timed(reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError:
            raise DownloadError("connection closed before the response head") from None
        except asyncio.LimitOverrunError:
            raise DownloadError("response head too long") from None
        if len(raw) > MAX_HEAD:
            raise DownloadError("response head too long")
        head = parse_head(raw[:-4])
        start = offset
        if head.status == 206:
            content_range = head.header("content-range")
            if content_range is None:
                raise DownloadError("206 without Content-Range")
            first, _, _total = parse_content_range(content_range)
            if first != offset:
                raise DownloadError(f"asked for bytes from {offset}, got a range from {first}")
        elif head.status == 200:
            start = 0  # the server ignored the Range: start over
        elif head.status == 416 and offset > 0:
            dest.unlink(missing_ok=True)  # our partial file does not fit the server's file
            raise DownloadError("416 Range Not Satisfiable: the partial file is discarded")
        else:
            raise DownloadError(f"HTTP {head.status} {head.reason}".strip())
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("r+b" if dest.exists() else "wb") as out:
            out.truncate(start)
            out.seek(start)
            try:
                await _copy_body(reader, head, out.write, timeout)
            except (OSError, TimeoutError) as exc:
                raise DownloadError(f"transfer cut: {exc or type(exc).__name__}") from None
            finally:
                out.flush()
                os.fsync(out.fileno())
        return Fetched(dest.stat().st_size, start)
    except ServerRejected:
        raise
    except (OSError, TimeoutError) as exc:
        raise DownloadError(f"transfer failed: {exc or type(exc).__name__}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await _timed(writer.wait_closed(), 5.0)
