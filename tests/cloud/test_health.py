"""``/healthz`` and ``/readyz`` as a load balancer probes them: no token, plain text, and
``/readyz`` 503 with its reason while the database is closed or does not answer, or once the
node has begun to shut down; ready again as soon as the database answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugstream.cloud import health
from plugstream.cloud.app import create_app
from plugstream.cloud.config import CloudConfig
from tests.cloud.raw_station201 import Hop
from tests.support import WAIT, Cloud, running_cloud, until


async def probe(cloud: Cloud, path: str) -> tuple[int, str]:
    """The status and text of ``path``, asked as a balancer does: no token."""
    async with httpx.AsyncClient(timeout=WAIT) as http:
        answer = await http.get(f"http://127.0.0.1:{cloud.port}{path}")
    assert answer.headers["content-type"].startswith("text/plain"), answer.headers
    return answer.status_code, answer.text


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.socket
async def test_a_serving_cloud_is_alive_and_ready_without_a_token(hop: Hop) -> None:
    assert await probe(hop.cloud, "/healthz") == (200, "ok\n")
    assert await probe(hop.cloud, "/readyz") == (200, "ok\n")


@pytest.mark.socket
async def test_readyz_is_503_once_the_database_is_closed(hop: Hop) -> None:
    await hop.cloud.store.close()
    status, text = await probe(hop.cloud, "/readyz")
    assert status == 503
    assert "database" in one_line(text)
    assert await probe(hop.cloud, "/healthz") == (200, "ok\n")  # alive: not to be restarted


@pytest.mark.socket
async def test_readyz_is_503_while_the_database_does_not_answer_and_ok_once_it_does(
    hop: Hop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "READY_TIMEOUT_S", 0.2)
    db = hop.cloud.store.db
    read = db.read
    answering = asyncio.Event()

    async def stuck(fn: Any) -> Any:
        await answering.wait()
        return await read(fn)

    monkeypatch.setattr(db, "read", stuck)
    status, text = await probe(hop.cloud, "/readyz")
    assert (status, one_line(text)) == (503, "the database did not answer within 0.2 s")

    monkeypatch.setattr(db, "read", read)
    answering.set()
    assert await probe(hop.cloud, "/readyz") == (200, "ok\n")


@pytest.mark.socket
async def test_a_probe_answered_after_the_shutdown_began_is_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM's shutdown closes the listener and waits for the requests in flight: a probe
    among them says the node is going, not that it is ready."""
    monkeypatch.setattr(health, "READY_TIMEOUT_S", WAIT)
    async with running_cloud(tmp_path) as cloud:
        db = cloud.store.db
        read = db.read
        reading, answering = asyncio.Event(), asyncio.Event()

        async def slow(fn: Any) -> Any:
            reading.set()
            await answering.wait()
            return await read(fn)

        monkeypatch.setattr(db, "read", slow)
        asked = asyncio.create_task(probe(cloud, "/readyz"))
        await asyncio.wait_for(reading.wait(), WAIT)
        cloud.server.should_exit = True  # what SIGTERM does
        app: Any = cloud.server.config.app
        await until(lambda: getattr(app.state, "draining", False), "the shutdown begun")
        answering.set()
        status, text = await asyncio.wait_for(asked, WAIT)
    assert (status, one_line(text)) == (503, "shutting down")


@pytest.mark.unit
async def test_the_setup_service_answers_the_probes_too(tmp_path: Path) -> None:
    app = create_app(CloudConfig(db=f"sqlite:///{tmp_path / 'setup.db'}", setup_only=True))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://setup.test") as client,
    ):
        for path in ("/healthz", "/readyz"):
            answer = await client.get(path)
            assert (answer.status_code, answer.text) == (200, "ok\n"), path
        assert (await client.get("/metrics")).status_code == 200
