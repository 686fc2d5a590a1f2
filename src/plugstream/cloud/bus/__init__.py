"""The bus between PlugStream Cloud's gateway nodes: NATS (``--bus nats://``).

One node alone (the embedded default, SQLite) needs no bus: its gateway holds every
station. Several nodes share one PostgreSQL database, the system of record, and meet
on NATS:

- :mod:`~plugstream.cloud.bus.presence`: which node holds each station's connection;
- :mod:`~plugstream.cloud.bus.cluster`: presence, commands to a station on another node
  (NATS request/reply) and the console's live updates, across nodes;
- :mod:`~plugstream.cloud.bus.events`: what stations report, published on NATS subjects
  through JetStream for other services (subjects and payloads: docs/events.md).
"""

from __future__ import annotations

import re

__all__ = ["valid_node_id"]

_NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")


def valid_node_id(node_id: str) -> bool:
    """A node id is one NATS subject token: letters, digits, '-' and '_', 1 to 32."""
    return _NODE_ID.match(node_id) is not None
