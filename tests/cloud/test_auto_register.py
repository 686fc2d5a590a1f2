"""Issue 14 point 12: ``--auto-register`` never makes a station someone else can take over."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from plugstream.cloud.storage import schema
from tests.support import WAIT, Cloud, basic_auth, running_cloud

V16 = "ocpp1.6"
FIRST = "first-password-0001"


async def _login(cloud: Cloud, station_id: str, headers: dict[str, str]) -> int:
    """The HTTP status of a login (101 when the WebSocket opened)."""
    try:
        async with connect(
            cloud.url(station_id),
            subprotocols=[V16],  # type: ignore[list-item]
            additional_headers=headers,
            open_timeout=WAIT,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.socket
async def test_credentials_for_another_username_are_refused_and_register_nothing(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path, auto_register=True) as cloud:
        assert await _login(cloud, "NEWA", basic_auth("SOMEONE", FIRST)) == 401
        assert await cloud.store.stations.get("NEWA") is None
        event = cloud.gateway.security_events[-1]
        assert (event.station_id, event.type) == ("NEWA", "FailedToAuthenticate")
        assert event.tech_info == "username is not the station id"
        assert cloud.gateway.failed_logins["NEWA"] == 1


@pytest.mark.socket
async def test_the_first_connections_password_becomes_the_stations(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, auto_register=True) as cloud:
        assert await _login(cloud, "NEWB", basic_auth("NEWB", FIRST)) == 101
        record = await cloud.store.stations.get("NEWB")
        assert record is not None and record.has_password and record.security_profile == 1
        stored = await cloud.store.db.read(
            lambda conn: conn.execute(
                select(schema.stations.c.password_hash).where(
                    schema.stations.c.station_id == "NEWB"
                )
            ).scalar()
        )
        assert isinstance(stored, str)
        assert stored.startswith("$argon2id$") and FIRST not in stored  # kept hashed
        # someone else, with another password or none, cannot take it over
        assert await _login(cloud, "NEWB", basic_auth("NEWB", "another-password-02")) == 401
        assert await _login(cloud, "NEWB", {}) == 401
        assert await _login(cloud, "NEWB", basic_auth("NEWB", FIRST)) == 101


@pytest.mark.socket
async def test_two_first_connections_at_once_one_password_wins(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, auto_register=True) as cloud:
        statuses = await asyncio.gather(
            _login(cloud, "NEWC", basic_auth("NEWC", "password-of-one-001")),
            _login(cloud, "NEWC", basic_auth("NEWC", "password-of-two-002")),
        )
        assert sorted(statuses) == [101, 401]
        winner = "password-of-one-001" if statuses[0] == 101 else "password-of-two-002"
        assert await _login(cloud, "NEWC", basic_auth("NEWC", winner)) == 101


@pytest.mark.socket
async def test_without_credentials_only_an_explicit_profile_0_setting_registers(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path, auto_register=True) as cloud:
        assert await _login(cloud, "NEWD", {}) == 401
        assert await _login(cloud, "NEWD", basic_auth("NEWD", "")) == 401  # an empty password
        assert await cloud.store.stations.get("NEWD") is None
        assert cloud.gateway.security_events[-1].tech_info == "no credentials"
    (tmp_path / "open").mkdir()
    async with running_cloud(tmp_path / "open", auto_register_unsecured=True) as cloud:
        assert await _login(cloud, "NEWD", {}) == 101
        record = await cloud.store.stations.get("NEWD")
        assert record is not None and record.security_profile == 0 and not record.has_password
        # a station with credentials still gets its password, even here
        assert await _login(cloud, "NEWE", basic_auth("NEWE", FIRST)) == 101
        assert await _login(cloud, "NEWE", {}) == 401


@pytest.mark.socket
@pytest.mark.parametrize(
    ("flag", "value"),
    [("--login-failures", "0"), ("--login-failures-per-address", "x"), ("--login-lock", "-1")],
)
def test_a_bad_login_flag_is_one_line_and_exit_2(tmp_path: Path, flag: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plugstream.cli", "cloud", "serve", "--port", "0", flag, value],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0]
