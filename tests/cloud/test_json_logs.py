"""``plugstream cloud serve --log-format json``: what the cloud writes on stderr, uvicorn's
own lines included, is one JSON object per line that a log collector reads as it is."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from plugstream.cli import main
from plugstream.cloud.logs import JsonFormatter
from plugstream.cloud.serve import READY
from tests.support import WAIT, basic_auth, cloud_serve_argv, free_port, read_until, stop_process

TOKEN = "json-logs-token-0123456789"


@pytest.mark.socket
async def test_every_line_on_stderr_is_a_json_log_record(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        cloud_serve_argv(port, tmp_path / "cloud.db", "--log-format", "json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PLUGSTREAM_API_TOKEN": TOKEN},
    )
    try:
        await asyncio.to_thread(read_until, proc, READY)
        # uvicorn's own logger: a request that is no HTTP
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), WAIT)).startswith(b"HTTP/1.1 400")
        writer.close()
        # the gateway's logger: a station with a wrong password
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=WAIT,
        ) as api:
            put = await api.put("/stations/CS-J", json={"password": "the-right-password-123"})
            assert put.status_code in (200, 201), put.text
        with pytest.raises(InvalidStatus):
            async with connect(
                f"ws://127.0.0.1:{port}/ocpp/CS-J",
                subprotocols=[Subprotocol("ocpp2.0.1")],
                additional_headers=basic_auth("CS-J", "a-wrong-password-456"),
                open_timeout=WAIT,
            ):
                pass
    finally:
        stop_process(proc)
    assert proc.stderr is not None
    lines = proc.stderr.read().splitlines()
    assert proc.returncode == 0, lines
    records = [json.loads(line) for line in lines]  # every line, or this fails
    for record in records:
        assert {"ts", "level", "logger", "message"} <= record.keys(), record
        assert record["ts"].endswith("Z")
    by_logger = {record["logger"]: record for record in records}
    assert "Invalid HTTP request" in by_logger["uvicorn.error"]["message"]
    assert by_logger["uvicorn.error"]["level"] == "WARNING"
    assert "CS-J: failed login" in by_logger["plugstream.cloud.gateway"]["message"]


@pytest.mark.unit
def test_a_record_with_an_exception_is_one_line_with_the_traceback_in_exc() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("plugstream.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            logger.error("two\nlines: %s", "here", exc_info=True, extra={"station_count": 3})
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["logger"] == "plugstream.test.json"
    assert record["message"] == "two\nlines: here"
    assert record["exc"].startswith("Traceback") and "ValueError: bad" in record["exc"]
    assert record["station_count"] == 3
    assert record["ts"][:4].isdigit() and record["ts"].endswith("Z")


@pytest.mark.unit
def test_a_log_format_other_than_text_or_json_is_one_line_and_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["cloud", "serve", "--log-format", "xml"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugstream: error: "), captured.err
    assert "--log-format" in lines[0] and "xml" in lines[0]
    assert captured.out == ""
