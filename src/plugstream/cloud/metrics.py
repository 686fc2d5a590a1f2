"""Prometheus metrics of a PlugStream Cloud node at ``GET /metrics`` (text exposition format,
no token: scrapers have none, and no station id is in any label).

Most are read when scraped from counters that the gateway and the store keep anyway
(:class:`NodeCollector`), so serving stations costs nothing more; the two latencies are
histograms observed as they happen (``Gateway.on_call``, one ``observe()`` per command;
``Database.observe_batches``, one per batch of writes). Counters count since the process
started; Prometheus computes the rates.

Stations and OCPP:

- ``plugstream_connected_stations{ocpp_version}`` (gauge): live connections, by version;
- ``plugstream_ocpp_messages_received_total{action}`` (counter): requests the stations
  sent (CALLs, 2.1 SENDs), by action; each CALL is answered once;
- ``plugstream_ocpp_messages_sent_total{action}`` (counter): CALLs this node sent stations;
- ``plugstream_ocpp_frames_received_total`` (counter): every frame received, answers too;
- ``plugstream_ocpp_protocol_violations_total`` (counter): frames that broke OCPP-J or
  the schemas (refused, or accepted from a lenient station);
- ``plugstream_command_duration_seconds{action,outcome}`` (histogram): the gateway's calls
  to stations (REST commands and the cloud's own), from the call to its end, waiting
  behind an earlier call included; outcome ``ok``, ``error`` (a CALLERROR or a request
  refused before it left), ``timeout`` or ``offline``;
- ``plugstream_login_refusals_total{reason}`` (counter): refused station logins, reasons
  ``invalid_station_id``, ``unknown_station``, ``credentials``, ``no_tls``,
  ``certificate``, ``tls_handshake``, ``throttled`` (429, locked by earlier failures) and
  ``busy`` (503, the password pool is full).

Storage:

- ``plugstream_db_write_queue`` (gauge): writes waiting for the storage writer's next batch;
- ``plugstream_db_batch_duration_seconds`` (histogram): one batch of writes run and
  committed (or failed) in one transaction: the database's write latency;
- ``plugstream_db_writes_total``, ``plugstream_db_commits_total`` (counters);
- ``plugstream_message_log_pending`` (gauge): frames waiting to be written to the message
  log (beyond 50,000 a station's next frame waits; frames sent are dropped sooner);
- ``plugstream_message_log_dropped_total`` (counter): frames left out of the message log.

And ``plugstream_build_info{version}`` (1), plus the client library's ``process_*``
(CPU, memory, open files). Each app has a registry of its own, not the library's global
one: a process may hold several apps (the tests do), each with its own gateway.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.datastructures import State

from plugstream import __version__

if TYPE_CHECKING:
    from plugstream.cloud.gateway import Gateway
    from plugstream.cloud.storage import Store

__all__ = [
    "BATCH_SECONDS_BUCKETS",
    "COMMAND_SECONDS_BUCKETS",
    "CloudMetrics",
    "NodeCollector",
    "router",
]

#: upper bounds (s) of the command latency: a station answers in tens of milliseconds on a
#: good link, seconds over a poor cellular one, and a timeout is ``call_timeout`` (30 s)
COMMAND_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: upper bounds (s) of a storage batch's run and commit
BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CloudMetrics:
    """One app's metrics: its registry, the command histogram and the collector of the
    rest, which reads ``state.gateway`` and ``state.store`` once the lifespan set them."""

    def __init__(self, state: State) -> None:
        self.registry = CollectorRegistry()
        self.commands = Histogram(
            "plugstream_command_duration_seconds",
            "Calls of this node to stations (REST commands and its own), by action and "
            "outcome: ok, error, timeout, offline.",
            ("action", "outcome"),
            buckets=COMMAND_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.batches = Histogram(
            "plugstream_db_batch_duration_seconds",
            "Batches of writes run and committed (or failed) in one database transaction.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(NodeCollector(state))
        ProcessCollector(registry=self.registry)

    def watch(self, store: Store, gateway: Gateway | None = None) -> None:
        """Observe ``store``'s write batches and ``gateway``'s calls to stations."""
        store.db.observe_batches(self.batches.observe)
        if gateway is not None:
            gateway.on_call = self.observe_call

    def observe_call(self, action: str, outcome: str, seconds: float) -> None:
        self.commands.labels(action, outcome).observe(seconds)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class NodeCollector(Collector):
    """What the gateway and the store count anyway, read at each scrape."""

    def __init__(self, state: State) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "plugstream_build_info", "The PlugStream version of this node.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        gateway: Gateway | None = getattr(self._state, "gateway", None)
        if gateway is not None:
            yield from gateway_metrics(gateway)
        store: Store | None = getattr(self._state, "store", None)
        if store is not None:
            yield from store_metrics(store)


def gateway_metrics(gateway: Gateway) -> Iterator[Metric]:
    """Connections, OCPP traffic, refused logins and message-log drops of ``gateway``."""
    connected = GaugeMetricFamily(
        "plugstream_connected_stations",
        "Stations connected to this node, by OCPP version.",
        labels=["ocpp_version"],
    )
    by_version = collections.Counter(v.value for v in gateway.local_versions().values())
    for version in gateway.handlers:
        by_version.setdefault(version.value, 0)
    for version_value, count in sorted(by_version.items()):
        connected.add_metric([version_value], count)
    yield connected
    for name, doc, counts in (
        (
            "plugstream_ocpp_messages_received",
            "Requests (CALLs, 2.1 SENDs) the stations sent, by action.",
            gateway.calls_received,
        ),
        (
            "plugstream_ocpp_messages_sent",
            "CALLs this node sent stations, by action.",
            gateway.calls_sent,
        ),
    ):
        family = CounterMetricFamily(name, doc, labels=["action"])
        for action, count in sorted(counts.items()):
            family.add_metric([action], count)
        yield family
    yield CounterMetricFamily(
        "plugstream_ocpp_frames_received",
        "OCPP frames received from stations, requests and answers.",
        value=gateway.frames_received,
    )
    yield CounterMetricFamily(
        "plugstream_ocpp_protocol_violations",
        "Frames that broke OCPP-J or the schemas (refused, or accepted from lenient stations).",
        value=sum(gateway.violations.values()),
    )
    refusals = CounterMetricFamily(
        "plugstream_login_refusals", "Refused station logins, by reason.", labels=["reason"]
    )
    for reason, count in gateway.login_refusals.items():
        refusals.add_metric([reason], count)
    yield refusals
    yield CounterMetricFamily(
        "plugstream_message_log_dropped",
        "Frames left out of the message log because it fell behind.",
        value=gateway.frames_dropped,
    )


def store_metrics(store: Store) -> Iterator[Metric]:
    """The storage writer's queue and batches, and the message log's backlog."""
    stats = store.db.stats
    yield GaugeMetricFamily(
        "plugstream_db_write_queue",
        "Writes waiting for the storage writer's next batch.",
        value=store.db.queued,
    )
    yield CounterMetricFamily(
        "plugstream_db_writes", "Write operations committed or failed.", value=stats.ops
    )
    yield CounterMetricFamily(
        "plugstream_db_commits",
        "Database transactions of the writer committed.",
        value=stats.commits,
    )
    yield GaugeMetricFamily(
        "plugstream_message_log_pending",
        "Frames waiting to be written to the message log.",
        value=store.messages.pending,
    )


router = APIRouter(include_in_schema=False)
"""``/metrics``, unguarded; not in the REST API's OpenAPI document."""


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    node: CloudMetrics = request.app.state.metrics
    return Response(node.exposition(), media_type=CONTENT_TYPE_LATEST)
