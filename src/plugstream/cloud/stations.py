"""What every side of the cloud says of a station's identity and reachability: the REST
API, the setup service and the OCPP handlers use it without importing the gateway."""

from __future__ import annotations

import re

__all__ = ["MAX_STATION_ID", "StationOffline", "valid_station_id"]

MAX_STATION_ID = 48
# identifierString (2.0.1 part 2 §2.1.3) without ':' (part 4 §3.1.1).
_STATION_ID = re.compile(r"[A-Za-z0-9*\-_=+|@.]{1,48}")


class StationOffline(Exception):
    """The station has no live connection to this gateway."""

    def __init__(self, station_id: str) -> None:
        super().__init__(f"station {station_id!r} is not connected")
        self.station_id = station_id


def valid_station_id(station_id: str) -> bool:
    return _STATION_ID.fullmatch(station_id) is not None
