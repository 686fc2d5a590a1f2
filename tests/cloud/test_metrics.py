"""``GET /metrics``, as Prometheus scrapes it: no token, the text format, and what an operator
graphs (stations connected, OCPP traffic, command latency, refused logins, the storage's
queue and commit time) moving as stations connect, boot, are called and are refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.cloud.raw_station201 import Hop, RawStation201, hop_cloud, station201
from tests.support import WAIT, Cloud, basic_auth, until

pytestmark = pytest.mark.socket

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(cloud: Cloud) -> tuple[str, Samples]:
    """The exposition text of ``/metrics`` (fetched without a token) and its samples, by
    (name, labels)."""
    async with httpx.AsyncClient(timeout=WAIT) as http:
        answer = await http.get(f"http://127.0.0.1:{cloud.port}/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return answer.text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_a_station_that_connects_and_boots_shows_in_the_metrics(hop: Hop) -> None:
    cloud = hop.cloud
    _, before = await scrape(cloud)
    assert value(before, "plugstream_connected_stations", ocpp_version="2.0.1") == 0
    assert (
        value(before, "plugstream_ocpp_messages_received_total", action="BootNotification") is None
    )

    async with station201(hop, "CS-METRICS-1") as station:
        await station.call("Heartbeat", {})
        text, samples = await scrape(cloud)
        assert value(samples, "plugstream_connected_stations", ocpp_version="2.0.1") == 1
        assert value(samples, "plugstream_connected_stations", ocpp_version="1.6") == 0
        received = "plugstream_ocpp_messages_received_total"
        assert value(samples, received, action="BootNotification") == 1
        assert value(samples, received, action="Heartbeat") == 1
        assert (value(samples, "plugstream_ocpp_frames_received_total") or 0) >= 2
        # the boot was stored: the writer committed, in batches that were timed
        assert (value(samples, "plugstream_db_commits_total") or 0) >= 1
        assert (value(samples, "plugstream_db_writes_total") or 0) >= 1
        assert (value(samples, "plugstream_db_batch_duration_seconds_count") or 0) >= 1
        assert value(samples, "plugstream_db_batch_duration_seconds_bucket", le="+Inf") == value(
            samples, "plugstream_db_batch_duration_seconds_count"
        )
        for gauge in ("plugstream_db_write_queue", "plugstream_message_log_pending"):
            assert (value(samples, gauge) or 0) >= 0
        assert value(samples, "plugstream_message_log_dropped_total") == 0
        assert "CS-METRICS-1" not in text  # no station id in any label

    async def gone() -> bool:
        _, samples = await scrape(cloud)
        return value(samples, "plugstream_connected_stations", ocpp_version="2.0.1") == 0

    await until(gone, "the station no longer counted as connected")


async def test_commands_through_the_rest_api_show_in_the_latency_histogram(
    hop: Hop, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    cs.answers["ClearCache"] = ["NotSupported", "no cache here"]
    ok = await api.post("/stations/CS-201/commands/Reset", json={"type": "Immediate"})
    assert ok.status_code == 200, ok.text
    refused = await api.post("/stations/CS-201/commands/ClearCache", json={})
    assert refused.status_code >= 400, refused.text

    _, samples = await scrape(hop.cloud)
    latency = "plugstream_command_duration_seconds"
    assert value(samples, f"{latency}_count", action="Reset", outcome="ok") == 1
    assert value(samples, f"{latency}_count", action="ClearCache", outcome="error") == 1
    assert value(samples, f"{latency}_count", action="Reset", outcome="timeout") is None
    took = value(samples, f"{latency}_sum", action="Reset", outcome="ok")
    assert took is not None and 0 < took < WAIT
    assert value(samples, f"{latency}_bucket", action="Reset", outcome="ok", le="+Inf") == 1
    sent = "plugstream_ocpp_messages_sent_total"
    assert value(samples, sent, action="Reset") == 1
    assert value(samples, sent, action="ClearCache") == 1


async def test_a_refused_login_is_counted_by_its_reason(hop: Hop, api: httpx.AsyncClient) -> None:
    put = await api.put("/stations/CS-LOCKED", json={"password": "the-right-password-123"})
    assert put.status_code in (200, 201), put.text
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            hop.cloud.url("CS-LOCKED"),
            subprotocols=[Subprotocol("ocpp2.0.1")],
            additional_headers=basic_auth("CS-LOCKED", "a-wrong-password-456"),
            open_timeout=WAIT,
        ):
            pass
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as invalid:
        async with connect(hop.cloud.url("a" * 49), open_timeout=WAIT):  # over 48 characters
            pass
    assert invalid.value.response.status_code == 400

    text, samples = await scrape(hop.cloud)
    refusals = "plugstream_login_refusals_total"
    assert value(samples, refusals, reason="credentials") == 1
    assert value(samples, refusals, reason="invalid_station_id") == 1
    assert value(samples, refusals, reason="throttled") == 0
    assert "CS-LOCKED" not in text


async def test_each_cloud_in_a_process_counts_its_own_stations(hop: Hop, tmp_path: Path) -> None:
    """Two apps in one process (as in the tests, or an embedding) keep separate metrics."""
    (tmp_path / "other").mkdir()
    async with (
        hop_cloud(tmp_path / "other", wall_clock=True) as other,
        station201(hop, "CS-HERE"),
    ):
        _, here = await scrape(hop.cloud)
        _, there = await scrape(other.cloud)
    assert value(here, "plugstream_connected_stations", ocpp_version="2.0.1") == 1
    assert value(there, "plugstream_connected_stations", ocpp_version="2.0.1") == 0
    assert (
        value(there, "plugstream_ocpp_messages_received_total", action="BootNotification") is None
    )
