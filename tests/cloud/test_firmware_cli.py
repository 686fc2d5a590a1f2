"""``plugstream firmware``: upload, list, roll out and follow an image from the command
line against a real cloud over TLS, with a connected test station."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from plugstream.cli import app
from plugstream.ocpp import OcppVersion
from tests.cloud import test_firmware_repo as repo
from tests.cloud import test_firmware_rollouts as rollouts
from tests.cloud.test_firmware_repo import TOKEN, Pki
from tests.support import Cloud

pytestmark = pytest.mark.socket

pki = repo.pki
cloud = repo.cloud


async def plugstream(*args: str) -> Result:
    """Run the command in a thread: the cloud it talks to runs on this test's loop."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_upload_rollout_and_status_from_the_command_line(
    cloud: Cloud, pki: Pki, tmp_path: Path
) -> None:
    image = tmp_path / "plugstream-2.2.0.bin"
    image.write_bytes(b"\x7fELF" + bytes(range(256)) * 5000)
    where = [
        "--url",
        f"https://127.0.0.1:{cloud.port}",
        "--token",
        TOKEN,
        "--cacert",
        str(pki.dir / "csms-root.pem"),
    ]
    uploaded = await plugstream("firmware", "upload", str(image), "--version", "2.2.0", *where)
    assert uploaded.exit_code == 0, uploaded.output
    image_id = uploaded.output.split()[1]
    assert f"/firmware/{image_id}/plugstream-2.2.0.bin" in uploaded.output

    listed = await plugstream("firmware", "list", "--json", *where)
    assert [i["image_id"] for i in json.loads(listed.output)] == [image_id]

    await rollouts.register(cloud, "CS1", "CS2")
    station = rollouts.TestStation("CS1", OcppVersion.V201)
    async with rollouts.online(cloud, pki, station):
        sent = await plugstream("firmware", "rollout", image_id, "-s", "CS1", "-s", "CS2", *where)
        assert sent.exit_code == 0, sent.output
        assert "Accepted 1, Pending 1" in sent.output
        update = await station.next_update()
        assert await rollouts.download_and_verify(update, pki) == image.read_bytes()
        await station.report("Downloading", update["requestId"])
        rollout_id = sent.output.split()[1]
        shown = await plugstream("firmware", "status", rollout_id, *where)
        assert shown.exit_code == 0
        assert f"CS1{' ' * 22}requestId {update['requestId']}" in shown.output
        assert "Downloading" in shown.output and "Pending" in shown.output


async def test_command_line_errors_are_one_line_with_the_apis_reason(
    cloud: Cloud, pki: Pki, tmp_path: Path
) -> None:
    where = ["--url", f"https://127.0.0.1:{cloud.port}", "--cacert", str(pki.dir / "csms-root.pem")]
    refused = await plugstream("firmware", "list", *where)  # no token
    assert refused.exit_code == 1
    assert "error 401" in refused.output
    both = await plugstream(
        "firmware", "rollout", "0" * 32, "-s", "CS1", "--percentage", "5", "--token", TOKEN, *where
    )
    assert both.exit_code == 2
    missing = await plugstream("firmware", "status", "77", "--token", TOKEN, *where)
    assert missing.exit_code == 1 and "no rollout 77" in missing.output
