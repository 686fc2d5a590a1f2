"""The transactions: OCPP 1.6 StartTransaction, StopTransaction and MeterValues, OCPP
2.0.1 TransactionEvent, each idempotent (a station retries what it was not answered),
and the records read back with their flags and meter values.

A write answers the id token in the same operation that stores the transaction, so the
answer and the stored transaction agree."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database
from .id_tokens import lookup_auth
from .lifecycle import Phase, StopData, on_start, on_stop
from .records import AuthResult, Flag, MeterSample, TransactionRecord
from .stations import ensure_station
from .transaction_row import (
    EXACT,
    OFFLINE_LATENESS,
    SELECT_TX,
    TransactionRow,
    add_flag,
    check_overlap_on_stop,
    create_transaction,
    is_register,
    normalise,
    store_samples,
)

__all__ = ["Transactions"]

_SELECT_STATION_TX = select(s.transactions).where(
    s.transactions.c.id == bindparam("pk"),
    s.transactions.c.station_id == bindparam("station_id"),
)
_SELECT_START_KEY = select(s.transactions.c.id, s.transactions.c.active).where(
    s.transactions.c.station_id == bindparam("sid"),
    s.transactions.c.start_key == bindparam("start_key"),
)
_SELECT_TX_FLAGS = (
    select(s.flags)
    .where(s.flags.c.transaction_pk.in_(bindparam("pks", expanding=True)))
    .order_by(s.flags.c.id)
)


def _set_charging_state(
    conn: Connection, station_id: str, evse_id: int, connector_id: int | None, state: str | None
) -> None:
    """A 2.0.1 EVSE's connectors (or the one named) take the transaction's chargingState;
    a connector not reported yet by StatusNotification has no row, and gets none here."""
    c = s.connectors.c
    query = update(s.connectors).where(c.station_id == station_id, c.evse_id == evse_id)
    if connector_id is not None:
        query = query.where(c.connector_id == connector_id)
    conn.execute(query.values(charging_state=state[:32] if state else None))


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value)))


def _tx_records(
    conn: Connection, rows: Sequence[Row[Any]], *, with_values: bool = False
) -> list[TransactionRecord]:
    if not rows:
        return []
    pks = [row.id for row in rows]
    flags_by_tx: dict[int, list[Flag]] = {}
    for f in conn.execute(_SELECT_TX_FLAGS, {"pks": pks}):
        flags_by_tx.setdefault(f.transaction_pk, []).append(
            Flag(code=f.code, detail=f.detail, at=f.at)
        )
    values_by_tx: dict[int, list[MeterSample]] = {}
    if with_values:
        for m in conn.execute(
            select(s.meter_values)
            .where(s.meter_values.c.transaction_pk.in_(pks))
            .order_by(s.meter_values.c.timestamp, s.meter_values.c.id)
        ):
            values_by_tx.setdefault(m.transaction_pk, []).append(
                MeterSample(
                    timestamp=m.timestamp,
                    measurand=m.measurand,
                    value=m.value,
                    unit=m.unit,
                    phase=m.phase or None,
                    context=m.context,
                    location=m.location or None,
                )
            )
    return [
        TransactionRecord(
            id=row.id,
            station_id=row.station_id,
            transaction_id=row.transaction_id,
            evse_id=row.evse_id,
            connector_id=row.connector_id,
            id_token=row.id_token,
            started_at=row.started_at,
            stopped_at=row.stopped_at,
            meter_start_wh=row.meter_start_wh,
            meter_stop_wh=row.meter_stop_wh,
            energy_wh=row.energy_wh,
            stop_reason=row.stop_reason,
            offline=bool(row.offline),
            active=bool(row.active),
            flags=flags_by_tx.get(row.id, []),
            meter_values=values_by_tx.get(row.id, []),
        )
        for row in rows
    ]


def _tx_record(conn: Connection, pk: int, *, with_values: bool = False) -> TransactionRecord:
    row = conn.execute(SELECT_TX, {"pk": pk}).one()
    return _tx_records(conn, [row], with_values=with_values)[0]


class Transactions:
    """The transactions' rows, their events, flags and meter values."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- OCPP 1.6 -------------------------------------------------------------------

    async def start(
        self,
        station_id: str,
        *,
        connector_id: int,
        id_token: str,
        meter_start_wh: Decimal | None,
        timestamp: datetime,
        received_at: datetime,
        reservation_id: int | None = None,
        flags: Sequence[tuple[str, str, datetime]] = (),
    ) -> tuple[TransactionRecord, AuthResult]:
        """StartTransaction. A retry (same connector, id tag, timestamp, meter start)
        returns the transaction already stored. ``meter_start_wh`` None: a meterStart
        that was not read (flagged by the caller in ``flags``); the baseline then comes
        from the first reading."""
        timestamp, received_at = as_utc(timestamp), as_utc(received_at)
        meter_start = None if meter_start_wh is None else Decimal(meter_start_wh)
        start_text = "-" if meter_start is None else str(meter_start.normalize(EXACT))
        start_key = f"{connector_id}|{id_token}|{timestamp.isoformat()}|{start_text}"

        def op(conn: Connection) -> tuple[TransactionRecord, AuthResult]:
            auth = lookup_auth(conn, id_token, received_at)
            existing = conn.execute(
                _SELECT_START_KEY, {"sid": station_id, "start_key": start_key}
            ).first()
            if existing is not None:
                if not existing.active:
                    add_flag(
                        conn,
                        station_id,
                        existing.id,
                        "StartAfterStop",
                        f"StartTransaction repeated at {received_at.isoformat()} after the stop",
                        received_at,
                    )
                return _tx_record(conn, existing.id), auth
            ensure_station(conn, station_id, received_at)
            tx = create_transaction(
                conn,
                station_id,
                transaction_id=None,
                evse_id=connector_id,
                connector_id=connector_id,
                id_token=id_token,
                started_at=timestamp,
                meter_start=meter_start,
                offline=received_at - timestamp > OFFLINE_LATENESS,
                received_at=received_at,
                start_key=start_key,
            )
            for code, detail, at in flags:
                tx.flag(code, f"StartTransaction: {detail}", at)
            tx.save(conn)
            return _tx_record(conn, tx.pk), auth

        return await self._db.write(op)

    async def stop(
        self,
        station_id: str,
        *,
        transaction_id: int,
        meter_stop_wh: Decimal | None,
        timestamp: datetime,
        received_at: datetime,
        reason: str | None = None,
        id_token: str | None = None,
        samples: list[MeterSample] | None = None,
        flags: Sequence[tuple[str, str, datetime]] = (),
    ) -> tuple[TransactionRecord | None, AuthResult | None]:
        """StopTransaction; a retry changes nothing, a second stop with other data is
        kept in a ConflictingStop flag (the first stays billed). An unknown transaction
        id is flagged (UnknownTransaction, with no transaction) and answered ``None``.
        ``meter_stop_wh`` None: a meterStop that was not read (flagged in ``flags``,
        with the transactionData's values not read)."""
        timestamp, received_at = as_utc(timestamp), as_utc(received_at)
        meter_stop = None if meter_stop_wh is None else Decimal(meter_stop_wh)
        normalised = [normalise(sample) for sample in samples or []]

        def op(conn: Connection) -> tuple[TransactionRecord | None, AuthResult | None]:
            auth = lookup_auth(conn, id_token, received_at) if id_token is not None else None
            row = conn.execute(
                select(s.transactions.c.id).where(
                    s.transactions.c.id == transaction_id,
                    s.transactions.c.station_id == station_id,
                )
            ).first()
            if row is None:
                add_flag(
                    conn,
                    station_id,
                    None,
                    "UnknownTransaction",
                    f"StopTransaction for unknown transaction {transaction_id} "
                    f"(meter stop {meter_stop} Wh at {timestamp.isoformat()})",
                    received_at,
                )
                for code, detail, at in flags:
                    add_flag(conn, station_id, None, code, f"StopTransaction: {detail}", at)
                return None, auth
            tx = TransactionRow(conn, row.id)
            decision = on_stop(
                Phase.of(active=bool(tx.v["active"])),
                StopData(tx.v["stopped_at"], tx.v["meter_stop_wh"], tx.v["stop_reason"]),
                StopData(timestamp, meter_stop, reason),
                f"StopTransaction received at {received_at.isoformat()}",
            )
            if not decision.billable:  # a retry (no flag), or a second stop: the first counts
                if not decision.flags:
                    return _tx_record(conn, tx.pk), auth
                for code, detail in decision.flags:
                    tx.flag(code, detail, received_at)
            store_samples(
                conn,
                station_id,
                evse_id=tx.v["evse_id"],
                connector_id=tx.v["connector_id"],
                tx=tx,
                samples=normalised,
                received_at=received_at,
                rejected=flags,
                what="StopTransaction",
            )
            if not decision.billable:
                tx.save(conn)
                return _tx_record(conn, tx.pk), auth
            started = tx.v["started_at"]
            if started is not None and timestamp < started:
                tx.flag(
                    "TimeBackwards",
                    f"stop at {timestamp.isoformat()} before the start at {started.isoformat()}",
                    timestamp,
                )
            tx.check_future(timestamp, received_at, "the stop")
            if meter_stop is not None:
                tx.apply_register(meter_stop, timestamp)
            tx.set("meter_stop_wh", meter_stop)
            tx.set("stopped_at", timestamp)
            tx.set("stop_reason", reason or "Local")
            tx.set("active", False)
            check_overlap_on_stop(conn, tx, timestamp)
            tx.save(conn)
            return _tx_record(conn, tx.pk), auth

        return await self._db.write(op)

    async def add_meter_values(
        self,
        station_id: str,
        *,
        evse_id: int,
        connector_id: int,
        transaction_id: int | None,
        samples: list[MeterSample],
        received_at: datetime,
        rejected: Sequence[tuple[str, str, datetime]] = (),
    ) -> None:
        """MeterValues; ``transaction_id`` is our numeric id. A sample already stored
        (same transaction, timestamp, measurand, phase) is stored once; one with another
        value is flagged DuplicateTimestamp; after the transaction's stop, samples are
        late data (LateMeterValue). ``rejected``: (code, detail, at) of values not read."""
        normalised = [normalise(sample) for sample in samples]

        def op(conn: Connection) -> None:
            tx = None
            if transaction_id is not None:
                found = conn.execute(
                    _SELECT_STATION_TX, {"pk": transaction_id, "station_id": station_id}
                ).first()
                if found is None:
                    add_flag(
                        conn,
                        station_id,
                        None,
                        "UnknownTransaction",
                        f"MeterValues for unknown transaction {transaction_id}",
                        received_at,
                    )
                else:
                    tx = TransactionRow(conn, found.id, found)
            store_samples(
                conn,
                station_id,
                evse_id=evse_id,
                connector_id=connector_id,
                tx=tx,
                samples=normalised,
                received_at=received_at,
                rejected=rejected,
            )
            if tx is not None:
                tx.save(conn)

        await self._db.write(op)

    # --- OCPP 2.0.1 -----------------------------------------------------------------

    async def transaction_event(
        self,
        station_id: str,
        *,
        event: dict[str, Any],
        received_at: datetime,
        flags: Sequence[tuple[str, str, datetime]] = (),
    ) -> tuple[TransactionRecord, AuthResult | None]:
        """TransactionEvent, idempotent on (station, transactionId, seqNo). ``flags``:
        (code, detail, at) the handler found in the event (an idToken refused)."""
        received_at = as_utc(received_at)
        info = event["transactionInfo"]
        station_tx_id = str(info["transactionId"])
        seq_no = int(event.get("seqNo", 0))
        event_type = str(event["eventType"])
        timestamp = _parse_time(event["timestamp"])
        offline = bool(event.get("offline", False))
        evse = event.get("evse") or {}
        evse_id = int(evse.get("id", 0))
        connector_id = int(evse.get("connectorId", 1 if evse_id else 0))
        token = (event.get("idToken") or {}).get("idToken")
        # The handlers' own reader of 2.0.1 sampled values, so both paths agree; imported
        # here because meter.py imports this package's records.
        from plugstream.cloud.meter import read_201

        readings = read_201(event.get("meterValue"), timestamp)
        samples = readings.samples
        registers = [sample for sample in samples if is_register(sample)]
        what = f"TransactionEvent {event_type} (seqNo {seq_no})"

        def op(conn: Connection) -> tuple[TransactionRecord, AuthResult | None]:
            auth = lookup_auth(conn, token, received_at) if token is not None else None
            found = conn.execute(
                select(s.transactions.c.id).where(
                    s.transactions.c.station_id == station_id,
                    s.transactions.c.transaction_id == station_tx_id,
                )
            ).first()
            if found is not None:
                replay = conn.execute(
                    select(s.transaction_events.c.id).where(
                        s.transaction_events.c.transaction_pk == found.id,
                        s.transaction_events.c.seq_no == seq_no,
                    )
                ).first()
                if replay is not None:
                    return _tx_record(conn, found.id), auth
                tx = TransactionRow(conn, found.id)
                if event_type == "Started" and not tx.v["active"]:
                    tx.flag(
                        "StartAfterStop",
                        f"Started (seqNo {seq_no}) at {timestamp.isoformat()} after the "
                        "transaction ended",
                        timestamp,
                    )
                if event_type == "Started" and tx.v["active"]:  # after the end: StartAfterStop
                    started_before = conn.execute(
                        select(s.transaction_events.c.seq_no).where(
                            s.transaction_events.c.transaction_pk == found.id,
                            s.transaction_events.c.event_type == "Started",
                        )
                    ).first()
                    start = on_start(
                        started_before is not None,
                        tx.v["id_token"],
                        token,
                        f"{what} at {timestamp.isoformat()} after Started "
                        f"(seqNo {started_before.seq_no if started_before else '?'})",
                    )
                    for code, detail in start.flags:
                        tx.flag(code, detail, timestamp)
                if evse and tx.v["evse_id"] == 0:
                    tx.set("evse_id", evse_id)
                    tx.set("connector_id", connector_id)
            else:
                ensure_station(conn, station_id, received_at)
                meter_start = registers[0].value if event_type == "Started" and registers else None
                tx = create_transaction(
                    conn,
                    station_id,
                    transaction_id=station_tx_id,
                    evse_id=evse_id,
                    connector_id=connector_id,
                    id_token=token,
                    started_at=timestamp,
                    meter_start=meter_start,
                    offline=offline,
                    received_at=received_at,
                )
                if event_type != "Started":
                    tx.flag(
                        "MissingStarted",
                        f"first heard of in a {event_type} event (seqNo {seq_no})",
                        timestamp,
                    )
            previous = conn.execute(
                select(s.transaction_events.c.seq_no, s.transaction_events.c.timestamp).where(
                    s.transaction_events.c.transaction_pk == tx.pk
                )
            ).all()
            for other in previous:
                if (other.seq_no < seq_no and other.timestamp > timestamp) or (
                    other.seq_no > seq_no and other.timestamp < timestamp
                ):
                    tx.flag(
                        "TimeBackwards",
                        f"seqNo {seq_no} at {timestamp.isoformat()} against seqNo "
                        f"{other.seq_no} at {other.timestamp.isoformat()}",
                        timestamp,
                    )
            if found is not None:
                tx.check_future(timestamp, received_at, f"{event_type} (seqNo {seq_no})")
            conn.execute(
                s.transaction_events.insert().values(
                    transaction_pk=tx.pk,
                    seq_no=seq_no,
                    event_type=event_type,
                    timestamp=timestamp,
                    trigger_reason=event.get("triggerReason"),
                    offline=offline,
                    received_at=received_at,
                )
            )
            if token is not None and tx.v["id_token"] is None:
                tx.set("id_token", token)
            store_samples(
                conn,
                station_id,
                evse_id=tx.v["evse_id"],
                connector_id=tx.v["connector_id"],
                tx=tx,
                samples=samples,
                received_at=received_at,
                event_at=timestamp,
                rejected=[*readings.flags, *flags],
                what=what,
            )
            if event_type == "Ended":
                stop = on_stop(
                    Phase.of(active=bool(tx.v["active"])),
                    StopData(tx.v["stopped_at"], tx.v["meter_stop_wh"], tx.v["stop_reason"]),
                    StopData(
                        timestamp,
                        registers[-1].value if registers else None,
                        info.get("stoppedReason"),
                    ),
                    f"{what} received at {received_at.isoformat()}",
                )
                for code, detail in stop.flags:
                    tx.flag(code, detail, received_at)
            if event_type == "Ended" and tx.v["active"]:
                if registers:
                    tx.set("meter_stop_wh", registers[-1].value)
                tx.set("stopped_at", timestamp)
                tx.set("stop_reason", info.get("stoppedReason") or "Local")
                tx.set("active", False)
                check_overlap_on_stop(conn, tx, timestamp)
            charging_state = info.get("chargingState")
            if event_type == "Ended" or (isinstance(charging_state, str) and tx.v["active"]):
                _set_charging_state(
                    conn,
                    station_id,
                    tx.v["evse_id"],
                    connector_id if evse.get("connectorId") is not None else None,
                    None if event_type == "Ended" else charging_state,
                )
            tx.save(conn)
            return _tx_record(conn, tx.pk), auth

        return await self._db.write(op)

    # --- reading --------------------------------------------------------------------

    async def get(self, id: int) -> TransactionRecord | None:
        """With meter values (chronological) and flags."""

        def read(conn: Connection) -> TransactionRecord | None:
            row = conn.execute(select(s.transactions).where(s.transactions.c.id == id)).first()
            if row is None:
                return None
            return _tx_records(conn, [row], with_values=True)[0]

        return await self._db.read(read)

    async def find(self, station_id: str, transaction_id: str) -> TransactionRecord | None:
        def read(conn: Connection) -> TransactionRecord | None:
            row = conn.execute(
                select(s.transactions).where(
                    s.transactions.c.station_id == station_id,
                    s.transactions.c.transaction_id == transaction_id,
                )
            ).first()
            return _tx_records(conn, [row])[0] if row is not None else None

        return await self._db.read(read)

    async def list_flags(self, station_id: str) -> list[Flag]:
        """All of a station's flags, including those of no known transaction."""

        def read(conn: Connection) -> list[Flag]:
            rows = conn.execute(
                select(s.flags).where(s.flags.c.station_id == station_id).order_by(s.flags.c.id)
            )
            return [Flag(code=row.code, detail=row.detail, at=row.at) for row in rows]

        return await self._db.read(read)

    # last: below it, ``list`` in an annotation would name this method
    async def list(
        self,
        station_id: str | None = None,
        *,
        id_token: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TransactionRecord]:
        """Newest first, with flags, without meter values: a station's, an idToken's,
        those started in [``since``, ``until``), those older than ``before_id`` (a page
        that stays put while new ones arrive)."""

        def read(conn: Connection) -> list[TransactionRecord]:
            t = s.transactions.c
            query = select(s.transactions).order_by(t.id.desc())
            if station_id is not None:
                query = query.where(t.station_id == station_id)
            if id_token is not None:
                query = query.where(t.id_token == id_token)
            if since is not None:
                query = query.where(t.started_at >= since)
            if until is not None:
                query = query.where(t.started_at < until)
            if before_id is not None:
                query = query.where(t.id < before_id)
            rows = conn.execute(query.limit(limit).offset(offset)).all()
            return _tx_records(conn, rows)

        return await self._db.read(read)
