"""What bounds a REST request before it reaches a handler or the database.

- :class:`BodyLimit`: a pure ASGI middleware that refuses a request body over its limit
  with 413 -- at once when ``Content-Length`` says so, or while a chunked body streams in,
  as soon as the count passes the limit. The application is never handed more than the
  limit: without it FastAPI reads a whole body into memory (a 100 MB one grew the
  server by 220 MB). Routes that stream a large body to disk (a firmware upload) get
  their own, larger limit.
- The integer ranges of the database's id columns: an id outside them cannot name a
  row, and handed to the database it is an overflow (500), not "no such row".
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BIGINT_MAX",
    "INTEGER_MAX",
    "BodyLimit",
    "BodyTooLarge",
    "in_range",
]

INTEGER_MAX = 2**31 - 1
"""The largest SQL INTEGER (PostgreSQL's int4): ``transactions.id``, OCPP's 32-bit integers."""

BIGINT_MAX = 2**63 - 1
"""The largest SQL BIGINT: ``messages.id``, ``firmware_rollouts.rollout_id``, OFFSET."""


def in_range(value: int, maximum: int) -> bool:
    """Whether ``value`` can be a row id of a column whose largest value is ``maximum``."""
    return 0 <= value <= maximum


class BodyTooLarge(HTTPException):
    """A request body past its limit (413). An HTTPException, so that FastAPI passes it on
    as it is when it surfaces inside a handler's body parsing, instead of calling it a
    body it could not parse (400)."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        if declared is not None:
            detail = f"the request body is {declared} bytes; the limit is {limit}"
        else:
            detail = f"the request body is over the limit of {limit} bytes"
        super().__init__(413, detail, headers={"Connection": "close"})


class BodyLimit:
    """Refuse HTTP request bodies over ``limit`` bytes with 413 and ``{"detail": ...}``.

    ``routes`` gives (method, path) pairs their own limit. The answer closes the
    connection: the rest of a refused body is not read to find the next request.
    """

    def __init__(
        self, app: ASGIApp, limit: int, routes: Mapping[tuple[str, str], int] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.routes = dict(routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.routes.get((scope["method"], scope["path"]), self.limit)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, BodyTooLarge(limit, declared))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as exc:
            if not started:  # a handler that let it pass; once answering, nothing to say
                await _refuse(send, exc)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(send: Send, exc: BodyTooLarge) -> None:
    body = json.dumps({"detail": exc.detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
