"""The REST API on a hostile network: request bodies are bounded (413, never read into
memory past the limit), and ids out of the database's range are answered 404 or 422,
never 500 (issue 14, points 5 and 13)."""

from __future__ import annotations

import asyncio
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request
from starlette.types import Message

from plugstream.cli import main
from plugstream.cloud.api.limits import BIGINT_MAX, INTEGER_MAX, BodyLimit
from plugstream.cloud.serve import READY
from tests.support import WAIT, cloud_serve_argv, free_port, read_until, running_cloud, stop_process

LIMIT = 64 * 1024
CHUNK = 16 * 1024
HUGE = 100 * (1 << 20)  # the 100 MB body


# -- the middleware alone ------------------------------------------------------------------


def _echo_app(seen: list[int]) -> FastAPI:
    """A FastAPI app whose one route reads the whole body, as a JSON route does."""
    app = FastAPI()

    @app.put("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        seen.append(len(body))
        return {"size": len(body)}

    return app


async def _call(
    app: Any, body_chunks: int, headers: list[tuple[bytes, bytes]]
) -> tuple[list[Message], int]:
    """Run one PUT /echo through ``app``: the messages sent and the chunks it pulled."""
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        more = pulled < body_chunks
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": more}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), WAIT)
    return sent, pulled


def _answer(sent: list[Message]) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], orjson.loads(body), dict(start["headers"])


@pytest.mark.unit
async def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    seen: list[int] = []
    app = BodyLimit(_echo_app(seen), LIMIT)
    sent, pulled = await _call(app, 1, [(b"content-length", str(HUGE).encode())])
    status, body, headers = _answer(sent)
    assert status == 413
    assert body == {"detail": f"the request body is {HUGE} bytes; the limit is {LIMIT}"}
    assert headers[b"connection"] == b"close"
    assert (pulled, seen) == (0, [])  # not a byte read, the handler never ran


@pytest.mark.unit
async def test_a_chunked_body_is_refused_once_it_passes_the_limit() -> None:
    """No Content-Length to go by: the count stops it, and the app never holds more than
    the limit (the chunk that passes it is not handed over)."""
    seen: list[int] = []
    app = BodyLimit(_echo_app(seen), LIMIT)
    chunks = HUGE // CHUNK
    sent, pulled = await _call(app, chunks, [(b"transfer-encoding", b"chunked")])
    status, body, _ = _answer(sent)
    assert status == 413
    assert body == {"detail": f"the request body is over the limit of {LIMIT} bytes"}
    assert pulled == LIMIT // CHUNK + 1  # of 6400 chunks: one past the limit, no more
    assert seen == []


@pytest.mark.unit
async def test_a_body_within_the_limit_and_a_route_of_its_own_pass() -> None:
    seen: list[int] = []
    within = BodyLimit(_echo_app(seen), LIMIT)
    sent, _ = await _call(within, LIMIT // CHUNK, [(b"content-length", str(LIMIT).encode())])
    assert _answer(sent)[:2] == (200, {"size": LIMIT})
    own = BodyLimit(_echo_app(seen), LIMIT, routes={("PUT", "/echo"): 4 * LIMIT})
    sent, _ = await _call(own, 4 * LIMIT // CHUNK, [(b"transfer-encoding", b"chunked")])
    assert _answer(sent)[:2] == (200, {"size": 4 * LIMIT})
    assert seen == [LIMIT, 4 * LIMIT]


# -- the cloud on loopback ----------------------------------------------------------------


def _send_until_answered(port: int, head: bytes, body: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``head`` and then ``body`` until the server answers (a plain blocking socket,
    in a worker thread: asyncio's streams drop an answer already received once the
    server resets the connection it did not read to its end); the answer and how many
    body bytes were sent before it came."""
    sent = 0
    answer = b""
    deadline = time.monotonic() + WAIT
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(head)
        for chunk in body:
            readable, writable, _ = select.select([sock], [sock], [], WAIT)
            if readable or time.monotonic() > deadline:
                break
            if writable:
                try:
                    sent += sock.send(chunk)
                except OSError:  # refused and reset: the answer is in
                    break
        while b"\r\n\r\n" not in answer or not _complete(answer):
            try:
                got = sock.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            answer += got
    return answer, sent


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


async def _raw_request(port: int, head: bytes, body: Iterator[bytes]) -> tuple[bytes, int]:
    return await asyncio.to_thread(_send_until_answered, port, head, body)


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


def _chunked(total: int) -> Iterator[bytes]:
    for chunk in _chunks(total):
        yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"


def _json_body(answer: bytes) -> tuple[str, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(), orjson.loads(body)


@pytest.mark.socket
async def test_a_100_mb_body_declared_or_chunked_is_refused_with_413(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        limit = cloud.config.max_body_bytes
        declared = (
            b"PUT /api/v1/id-tokens/TAG1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % HUGE
        )
        answer, sent = await _raw_request(cloud.port, declared, _chunks(HUGE))
        status, body = _json_body(answer)
        assert status == "HTTP/1.1 413 Request Entity Too Large"
        assert b"\r\nconnection: close\r\n" in answer.lower()  # the rest is not read
        assert body == {"detail": f"the request body is {HUGE} bytes; the limit is {limit}"}
        assert sent < HUGE  # answered while the client was still sending

        chunked = (
            b"PUT /api/v1/id-tokens/TAG1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        answer, sent = await _raw_request(cloud.port, chunked, _chunked(HUGE))
        status, body = _json_body(answer)
        assert status == "HTTP/1.1 413 Request Entity Too Large"
        assert body == {"detail": f"the request body is over the limit of {limit} bytes"}
        assert sent < HUGE
        assert await cloud.store.id_tokens.get("TAG1") is None

        # an operator's ordinary request is served as before
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}/api/v1") as api:
            answer2 = await api.put("/id-tokens/TAG1", json={"status": "Accepted"})
            assert answer2.status_code == 201


@pytest.mark.socket
async def test_the_limit_is_a_cloud_serve_flag_and_bounds_the_servers_memory(
    tmp_path: Path,
) -> None:
    """The issue's figure: a 100 MB body grew the server by 220 MB. Now it is refused
    after --max-body-bytes, and the server's resident memory stays where it was."""
    port = free_port()
    proc = subprocess.Popen(
        cloud_serve_argv(port, tmp_path / "cloud.db", "--max-body-bytes", "100000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_until(proc, READY)

        def rss() -> int:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
            return int(line.split()[1]) * 1024

        before = rss()
        head = (
            b"PUT /api/v1/id-tokens/TAG1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        answer, _ = await _raw_request(port, head, _chunked(HUGE))
        assert _json_body(answer) == (
            "HTTP/1.1 413 Request Entity Too Large",
            {"detail": "the request body is over the limit of 100000 bytes"},
        )
        assert rss() - before < 20 * (1 << 20)
    finally:
        stop_process(proc)
    assert proc.poll() is not None


@pytest.mark.unit
def test_cloud_serve_refuses_a_body_limit_below_1024(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cloud", "serve", "--max-body-bytes", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-body-bytes" in err


# -- ids out of range -------------------------------------------------------------------

TOO_BIG = "99999999999999999999999"  # the id: past every SQL integer
HUGE_DIGITS = "9" * 5000  # past Python's own int() limit for text


@pytest.mark.socket
async def test_ids_out_of_range_are_404_or_422_never_500(tmp_path: Path) -> None:
    async with (
        running_cloud(tmp_path) as cloud,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}/api/v1") as api,
    ):
        await cloud.store.stations.register("CP1", password=None, security_profile=0)
        not_found = [
            f"/transactions/{TOO_BIG}",
            f"/transactions/{INTEGER_MAX + 1}",  # a BIGINT, not the column's INTEGER
            f"/transactions/{-(2**63) - 1}",
            "/transactions/-1",
            f"/rollouts/{TOO_BIG}",
            f"/rollouts/{BIGINT_MAX + 1}",
            f"/rollouts/{-(2**63) - 1}",
        ]
        for path in not_found:
            answer = await api.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["detail"].startswith("no "), path
        invalid = {
            f"/transactions?offset={TOO_BIG}": "offset: Input should be less than or equal to",
            f"/transactions?offset={BIGINT_MAX + 1}": "offset: Input should be less than",
            f"/stations/CP1/messages?before={TOO_BIG}": "before: Input should be less than",
            f"/transactions/{HUGE_DIGITS}": "tx_id: Unable to parse input string",
            f"/rollouts/{HUGE_DIGITS}": "rollout_id: Unable to parse input string",
        }
        for path, reason in invalid.items():
            answer = await api.get(path)
            assert answer.status_code == 422, (path, answer.text)
            assert answer.json()["detail"].startswith(reason), (path, answer.json())
        # the largest ids in range are simply not there
        for path in (
            f"/transactions/{INTEGER_MAX}",
            f"/rollouts/{BIGINT_MAX}",
            f"/transactions?offset={BIGINT_MAX}",
            f"/stations/CP1/messages?before={BIGINT_MAX}",
        ):
            answer = await api.get(path)
            assert answer.status_code in (200, 404), (path, answer.text)
        rollout = await api.post(
            "/firmware/0123456789abcdef0123456789abcdef/rollouts",
            json={"percentage": 50, "retry_interval": int(TOO_BIG)},
        )
        assert rollout.status_code == 422
        assert rollout.json()["detail"].startswith("retry_interval: Input should be less than")
