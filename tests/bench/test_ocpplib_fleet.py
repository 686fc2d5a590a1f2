"""The ocpp-library peer fleet of bench/fleet.py does what our fleet does, against our cloud."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

import pytest

from plugstream.cloud.app import create_app
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.serve import CloudServer, bound_port, uvicorn_config
from plugstream.cloud.storage import IdTokenRecord, Store
from tests.support import WAIT, until

pytestmark = pytest.mark.socket

PEER = Path(__file__).resolve().parents[2] / "bench" / "peers" / "ocpplib_fleet.py"


def load_peer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ocpplib_fleet", PEER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


peer = load_peer()


@asynccontextmanager
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[int, Store]]:
    config = CloudConfig(
        host="127.0.0.1",
        port=0,
        db=f"sqlite:///{tmp_path / 'cloud.db'}",
        auto_register_unsecured=True,
    )
    app = create_app(config)
    server = CloudServer(uvicorn_config(config, app))
    task = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started or task.done(), "the server started")
        assert server.started, "the server did not start"
        store: Store = app.state.store
        await store.id_tokens.put(IdTokenRecord(id_token="PSDEMO0001", status="Accepted"))
        yield bound_port(server, 0), store
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_every_peer_boots_starts_a_transaction_and_sends_meter_values(
    tmp_path: Path, version: str
) -> None:
    async with cloud(tmp_path) as (port, store):
        args = argparse.Namespace(
            stations=3,
            csms=f"ws://127.0.0.1:{port}/ocpp",
            ocpp=version,
            duration=2.5,
            id_prefix="LIB-",
            id_tag="PSDEMO0001",
            meter_interval=0.5,
            ping_interval=60.0,
            connect_rate=50.0,
            json=True,
        )
        stats = await peer.main_async(args)
        assert stats.charging == 3
        assert stats.errors == 0
        # Boot, Status x1-2, Authorize, Start, Status, then a few meter values each
        assert stats.messages >= 3 * 8
        transactions = await store.transactions.list(None, limit=10, offset=0)
        assert len(transactions) == 3
        assert {t.station_id for t in transactions} == {"LIB-001", "LIB-002", "LIB-003"}
