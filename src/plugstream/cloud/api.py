"""The REST API of PlugStream Cloud, under ``/api/v1``.

Stations (list, view, register), their OCPP message logs, transactions, id
tokens, and commands to a connected station: an operator's OCPP CALL, checked
against the official schema before it goes out and answered with the station's
own payload.

Every bad request gets a 4xx with a JSON body ``{"detail": "<the reason>"}``;
times are UTC, written ISO 8601 with ``Z``; energy is exact Wh, written as a
JSON number.
"""

from __future__ import annotations

import asyncio
import difflib
import enum
import secrets
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, cast

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import to_json

from plugstream.cloud.gateway import StationOffline, valid_station_id
from plugstream.cloud.storage.records import (
    ConnectorStatus,
    Flag,
    IdTokenRecord,
    MessageRecord,
    MeterSample,
    StationRecord,
    TransactionRecord,
)
from plugstream.cloud.storage.security import list_security_events as list_security_events_in
from plugstream.ocpp import CallTimeout, OcppError, OcppVersion, csms_actions, schemas

if TYPE_CHECKING:
    from plugstream.cloud.gateway import Gateway
    from plugstream.cloud.storage import Store

__all__ = ["API_PREFIX", "build_router", "guarded_router"]

API_PREFIX = "/api/v1"

STATION_ID_MAX = 48  # OCPP 1.6 security whitepaper / 2.0.1 part 2: identity is string[48]
ID_TOKEN_MAX = 36  # 2.0.1 IdTokenType.idToken is string[36] (1.6 idTag is CiString20)
PASSWORD_MIN, PASSWORD_MAX = 16, 40  # 1.6 security whitepaper: AuthorizationKey, 16..40
COMMAND_TIMEOUT_MIN, COMMAND_TIMEOUT_MAX = 1.0, 300.0


# -- value types ------------------------------------------------------------------------


def _as_utc(value: datetime) -> datetime:
    """Aware datetimes are moved to UTC; naive ones are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _exact_number(value: Decimal) -> int | float:
    """A Decimal as a JSON number with the same digits: an int when whole, else the float
    whose shortest repr reads back as exactly this Decimal (true for up to 15 significant
    digits, far beyond any meter register's resolution)."""
    if not value.is_finite():
        return float(value)  # NaN and infinities: pydantic writes null
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        # More digits than a double carries: no JSON reader would keep them either.
        # Round once, here, to 15 significant digits, rather than let binary rounding pick.
        as_float = float(f"{value:.15g}")
    return as_float


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]
"""Shown in UTC, ``2024-05-01T12:00:00Z``."""

UtcInput = Annotated[AwareDatetime, AfterValidator(_as_utc)]
"""Input time: must carry its offset (``Z`` or ``+01:00``); stored in UTC."""

Wh = Annotated[
    Decimal,
    PlainSerializer(_exact_number, return_type=Any, when_used="json"),
    WithJsonSchema({"type": "number"}, mode="serialization"),
]
"""Exact energy in Wh, written as a JSON number (1234.5 stays 1234.5)."""


class IdTokenStatus(enum.StrEnum):
    Accepted = "Accepted"
    Blocked = "Blocked"
    Expired = "Expired"
    Invalid = "Invalid"


class IdTokenType(enum.StrEnum):
    """2.0.1 IdTokenEnumType; 1.6 idTags are ``ISO14443`` by default."""

    Central = "Central"
    eMAID = "eMAID"
    ISO14443 = "ISO14443"
    ISO15693 = "ISO15693"
    KeyCode = "KeyCode"
    Local = "Local"
    MacAddress = "MacAddress"
    NoAuthorization = "NoAuthorization"


# -- response and request models --------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    detail: str = Field(description="Why the request failed, in words.")


class OcppErrorOut(ErrorOut):
    """A payload refused by the schema (422) or a CALLERROR from the station (502)."""

    error_code: str = Field(description="The OCPP RPC framework error code.")
    error_details: dict[str, Any] = Field(default_factory=dict)


class ConnectorOut(_Out):
    evse_id: int = Field(
        description="1.6: the connectorId (0 = whole station); 2.0.1: the EVSE id."
    )
    connector_id: int
    status: str = Field(description="The spec's value, e.g. Available, Charging, Faulted.")
    error_code: str | None
    updated_at: UtcDateTime


BootStatus = Literal["Accepted", "Pending", "Rejected"]


class StationOut(_Out):
    station_id: str
    connected: bool = Field(description="Whether the station holds an OCPP connection right now.")
    ocpp_version: str | None = Field(
        description="The live connection's OCPP version, else the last one seen."
    )
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    security_profile: int
    lenient: bool
    boot_status: BootStatus
    has_password: bool
    registered_at: UtcDateTime
    last_boot: UtcDateTime | None
    last_seen: UtcDateTime | None
    clock_offset_s: float | None = Field(description="Station clock minus server clock, seconds.")
    connectors: list[ConnectorOut]
    protocol_violations: int = Field(
        description="Frames since the server started that broke OCPP-J or the schemas "
        "(refused for strict stations, accepted for lenient ones)."
    )
    failed_logins: int = Field(description="Refused logins since the server started.")


class StationIn(BaseModel):
    """Register a station, or replace its registration."""

    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(
        default=None,
        description=f"HTTP Basic password ({PASSWORD_MIN}..{PASSWORD_MAX} characters); "
        "required for security profiles 1 and 2 unless the station has one already "
        "(leave it out to keep it).",
    )
    security_profile: int = Field(
        default=1,
        ge=0,
        le=3,
        description="OCPP security profile; 0 (no authentication) for tests only.",
    )
    lenient: bool = Field(
        default=False, description="Accept this station's known deviations from the schemas."
    )
    boot_status: BootStatus = Field(
        default="Accepted",
        description="The answer to the station's BootNotification: Pending or Rejected hold "
        "it back (it may then send nothing but BootNotification), Accepted lets it work.",
    )

    @model_validator(mode="after")
    def _password_fits(self) -> StationIn:
        if self.password is None:
            return self
        if not PASSWORD_MIN <= len(self.password) <= PASSWORD_MAX:
            raise ValueError(
                f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long "
                f"(OCPP 1.6 security whitepaper, AuthorizationKey), not {len(self.password)}"
            )
        if not (self.password.isascii() and self.password.isprintable()):
            raise ValueError("password must be printable ASCII")
        return self


class FlagOut(_Out):
    code: str = Field(description="e.g. StartAfterStop, Overlap, TimeBackwards, RegisterDecreased.")
    detail: str
    at: UtcDateTime


class MeterSampleOut(_Out):
    timestamp: UtcDateTime
    measurand: str
    value: Wh = Field(description="In ``unit``; energy registers are in Wh.")
    unit: str | None
    phase: str | None
    context: str | None
    location: str | None


class TransactionOut(_Out):
    id: int = Field(description="Our numeric id; the 1.6 transactionId.")
    station_id: str
    transaction_id: str = Field(description="The station's id in 2.0.1, str(id) in 1.6.")
    evse_id: int
    connector_id: int
    id_token: str | None
    started_at: UtcDateTime | None
    stopped_at: UtcDateTime | None
    meter_start_wh: Wh | None
    meter_stop_wh: Wh | None
    energy_wh: Wh | None = Field(description="Energy delivered, exact, from the meter register.")
    stop_reason: str | None
    offline: bool = Field(description="Started or stopped while the station was offline.")
    active: bool
    flags: list[FlagOut] = Field(description="Suspect data found in this transaction (hygiene).")


class TransactionDetailOut(TransactionOut):
    meter_values: list[MeterSampleOut]


class MessageOut(_Out):
    id: int
    at: UtcDateTime
    direction: Literal["in", "out"] = Field(description="in: from the station; out: to it.")
    text: str = Field(description="The OCPP-J frame as on the wire.")


class SecurityEventOut(_Out):
    timestamp: UtcDateTime = Field(
        description="When the station says it happened (source station), or when the "
        "gateway refused the connection (source gateway)."
    )
    station_id: str = Field(description="The station, or the id a refused connection asked for.")
    type: str = Field(description="The OCPP security event, e.g. FailedToAuthenticate.")
    tech_info: str = Field(description="What happened, in the station's or gateway's words.")
    source: Literal["station", "gateway"] = Field(
        description="station: a SecurityEventNotification; gateway: a refused connection."
    )


class MessagePage(BaseModel):
    messages: list[MessageOut] = Field(description="Newest first.")
    next_before: int | None = Field(
        description="Pass as ?before= for the next (older) page; null on the last page."
    )


class IdTokenOut(_Out):
    id_token: str
    status: str
    expiry: UtcDateTime | None
    parent_id_token: str | None
    token_type: str


class IdTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: IdTokenStatus = IdTokenStatus.Accepted
    expiry: UtcInput | None = None
    parent_id_token: str | None = Field(default=None, min_length=1, max_length=ID_TOKEN_MAX)
    token_type: IdTokenType = IdTokenType.ISO14443


# -- helpers ----------------------------------------------------------------------------


def _station_id(value: str, what: str = "station id") -> str:
    if not 1 <= len(value) <= STATION_ID_MAX:
        raise HTTPException(
            422, f"{what} must be 1 to {STATION_ID_MAX} characters long, not {len(value)}"
        )
    if ":" in value:
        raise HTTPException(422, f"{what} {value!r} must not contain ':' (HTTP Basic user name)")
    if not valid_station_id(value):
        raise HTTPException(
            422,
            f"{what} {value!r} may only hold the characters of an OCPP identifierString: "
            "A-Z a-z 0-9 * - _ = + | @ .",
        )
    return value


def _id_token(value: str) -> str:
    if not 1 <= len(value) <= ID_TOKEN_MAX:
        raise HTTPException(
            422, f"id token must be 1 to {ID_TOKEN_MAX} characters long, not {len(value)}"
        )
    return value


def _describe(errors: Any) -> str:
    """One readable line from pydantic's validation errors: ``where: what; ...``."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        where = ".".join(loc)
        if error.get("type") == "json_invalid":
            message = "the body is not valid JSON"
            where = ""
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "invalid request"


def _error(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail, **extra})


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        401: "Missing or wrong bearer token.",
        404: "No such resource.",
        409: "The station is not connected.",
        422: "The request is invalid; the detail says why.",
        502: "The station answered with a CALLERROR.",
        504: "The station did not answer in time.",
    }
    models: dict[int, type[BaseModel]] = {422: ErrorOut, 502: OcppErrorOut}
    return {c: {"model": models.get(c, ErrorOut), "description": text[c]} for c in codes}


def _version_of(text: str | None) -> OcppVersion | None:
    if text is None:
        return None
    try:
        return OcppVersion.parse(text)
    except ValueError:
        return None


# -- the router -------------------------------------------------------------------------


def guarded_router(api_token: str | None, **kwargs: Any) -> APIRouter:
    """An ``/api/v1`` router whose every route checks ``Authorization: Bearer <api_token>``
    first (401 with ``WWW-Authenticate: Bearer`` if missing or wrong) and words request
    validation errors as one line (422). ``api_token=None`` leaves it open: local demos
    only. Every feature's router (firmware, setup claims, certificates) is made here."""
    expected = api_token.encode() if api_token is not None else None

    def check_bearer(request: Request) -> JSONResponse | None:
        if expected is None:
            return None
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return JSONResponse(
                status_code=401,
                content={"detail": "bearer token required (Authorization: Bearer <token>)"},
                headers={"WWW-Authenticate": 'Bearer realm="PlugStream Cloud"'},
            )
        if not secrets.compare_digest(credentials.strip().encode(), expected):
            return JSONResponse(
                status_code=401,
                content={"detail": "wrong bearer token"},
                headers={
                    "WWW-Authenticate": 'Bearer realm="PlugStream Cloud", error="invalid_token"'
                },
            )
        return None

    class Route(APIRoute):
        """Checks the token before anything else, and words validation errors as one line."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                refused = check_bearer(request)
                if refused is not None:
                    return refused
                try:
                    return await handler(request)
                except RequestValidationError as exc:
                    return _error(422, _describe(exc.errors()))

            return guarded

    # Documents the scheme in OpenAPI; the check itself is done by Route, first.
    security = [Depends(HTTPBearer(auto_error=False))] if api_token is not None else []
    return APIRouter(
        prefix=kwargs.pop("prefix", API_PREFIX),
        route_class=Route,
        dependencies=security,
        responses=_responses(401) if api_token is not None else None,
        **kwargs,
    )


def build_router(
    store_getter: Callable[[], Store],
    gateway_getter: Callable[[], Gateway],
    api_token: str | None,
) -> APIRouter:
    """The ``/api/v1`` router of stations, commands, transactions and id tokens.

    Requests must carry ``Authorization: Bearer <api_token>`` (:func:`guarded_router`).
    """
    router = guarded_router(api_token)

    async def station_or_404(station_id: str) -> StationRecord:
        record = await store_getter().get_station(_station_id(station_id))
        if record is None:
            raise HTTPException(404, f"station {station_id!r} is not registered")
        return record

    def station_out(record: StationRecord) -> StationOut:
        gateway = gateway_getter()
        live = gateway.version_of(record.station_id)
        return StationOut(
            station_id=record.station_id,
            connected=gateway.is_connected(record.station_id),
            ocpp_version=live.value if live is not None else record.ocpp_version,
            vendor=record.vendor,
            model=record.model,
            serial_number=record.serial_number,
            firmware_version=record.firmware_version,
            security_profile=record.security_profile,
            lenient=record.lenient,
            boot_status=cast(BootStatus, record.boot_status),
            has_password=record.has_password,
            registered_at=record.registered_at,
            last_boot=record.last_boot,
            last_seen=record.last_seen,
            clock_offset_s=record.clock_offset_s,
            connectors=[_connector(c) for c in record.connectors],
            protocol_violations=gateway.violations[record.station_id],
            failed_logins=gateway.failed_logins[record.station_id],
        )

    # -- stations ---------------------------------------------------------------------

    @router.get("/stations", response_model=list[StationOut], tags=["stations"])
    async def list_stations() -> Response:
        """Every registered station, with whether it is connected now."""
        records = await store_getter().list_stations()
        # Tens of thousands of stations: written from the records by pydantic's serializer
        # in one go, as StationOut would write them, without a model (and FastAPI's
        # validation of it) per station: the event loop that builds this serves every
        # station too, and a listing took it for a second at 10,000 stations.
        # Written in a worker thread from a snapshot of the live connections and counters:
        # the loop takes turns with it instead of stalling every station for its length.
        gateway = gateway_getter()
        live = gateway.live_versions()
        violations, failed = dict(gateway.violations), dict(gateway.failed_logins)
        body = await asyncio.to_thread(
            lambda: to_json(
                [_station_json(r, live.get(r.station_id), violations, failed) for r in records]
            )
        )
        return Response(body, media_type="application/json")

    @router.get(
        "/stations/{station_id}",
        response_model=StationOut,
        responses=_responses(404, 422),
        tags=["stations"],
    )
    async def get_station(station_id: str) -> StationOut:
        """Model, firmware, OCPP version, connection, last seen, clock offset, connectors."""
        return station_out(await station_or_404(station_id))

    @router.put(
        "/stations/{station_id}",
        response_model=StationOut,
        responses={201: {"model": StationOut, "description": "Registered."}, **_responses(422)},
        tags=["stations"],
    )
    async def put_station(station_id: str, body: StationIn, response: Response) -> StationOut:
        """Register a station (201) or replace its password, security profile, lenient flag
        and boot status."""
        store = store_getter()
        existing = await store.get_station(_station_id(station_id))
        if (
            body.password is None
            and body.security_profile in (1, 2)
            and (existing is None or not existing.has_password)
        ):
            raise HTTPException(
                422,
                f"password: security profile {body.security_profile} needs a password "
                f"of {PASSWORD_MIN} to {PASSWORD_MAX} characters",
            )
        record = await store.register_station(
            station_id,
            password=body.password,
            security_profile=body.security_profile,
            lenient=body.lenient,
            boot_status=body.boot_status,
        )
        response.status_code = 200 if existing is not None else 201
        return station_out(record)

    @router.get(
        "/stations/{station_id}/messages",
        response_model=MessagePage,
        responses=_responses(404, 422),
        tags=["stations"],
    )
    async def list_messages(
        station_id: str,
        limit: Annotated[int, Query(ge=1, le=500, description="Messages per page.")] = 50,
        before: Annotated[
            int | None, Query(ge=1, description="Only messages older than this message id.")
        ] = None,
    ) -> MessagePage:
        """The station's OCPP message log, newest first, one page at a time."""
        await station_or_404(station_id)
        found: list[MessageRecord] = await store_getter().list_messages(
            station_id, limit=limit + 1, before_id=before
        )
        page = found[:limit]
        more = len(found) > limit
        return MessagePage(
            messages=[MessageOut.model_validate(m) for m in page],
            next_before=page[-1].id if more and page else None,
        )

    @router.get(
        "/security-events",
        response_model=list[SecurityEventOut],
        responses=_responses(422),
        tags=["security"],
    )
    async def list_security_events(
        limit: Annotated[int, Query(ge=1, le=1000, description="Events to return.")] = 100,
        station_id: Annotated[
            str | None, Query(max_length=255, description="Only this station's events.")
        ] = None,
    ) -> list[SecurityEventOut]:
        """Security events, newest first: those stations reported (SecurityEventNotification)
        and the connections the gateway refused (wrong password, wrong or missing client
        certificate, unknown station): what an operator looks at after an alert."""
        found = await list_security_events_in(store_getter(), station_id=station_id, limit=limit)
        return [
            SecurityEventOut(
                timestamp=e.timestamp,
                station_id=e.station_id,
                type=e.type,
                tech_info=e.tech_info or "",
                source="gateway" if e.source == "gateway" else "station",
            )
            for e in found
        ]

    @router.post(
        "/stations/{station_id}/commands/{action}",
        response_model=None,
        responses={
            200: {
                "description": "The station's response payload, exactly as it sent it.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **_responses(404, 409, 422, 502, 504),
        },
        tags=["commands"],
    )
    async def command(
        station_id: str,
        action: str,
        payload: Annotated[
            dict[str, Any],
            Body(
                description="The OCPP request payload of the action.",
                openapi_examples={"Reset (1.6)": {"value": {"type": "Soft"}}},
            ),
        ],
        timeout: Annotated[
            float | None,
            Query(
                ge=COMMAND_TIMEOUT_MIN,
                le=COMMAND_TIMEOUT_MAX,
                description="Seconds the station has to answer (default: the server's).",
            ),
        ] = None,
    ) -> Response:
        """Send an OCPP CALL to a connected station and return its answer.

        The payload is checked against the official schema of the station's OCPP
        version first. 404: not an action the CSMS sends; 409: the station is not
        connected; 422: the payload is invalid; 504: no answer in time; 502: the
        station answered with a CALLERROR.
        """
        record = await station_or_404(station_id)
        gateway = gateway_getter()
        version = gateway.version_of(station_id) or _version_of(record.ocpp_version)
        versions = [version] if version is not None else list(OcppVersion)
        if not any(action in csms_actions(v) for v in versions):
            raise HTTPException(404, _unknown_action(action, versions))
        if version is None or not gateway.is_connected(station_id):
            raise HTTPException(409, f"station {station_id!r} is not connected")
        invalid = schemas(version).validate(action, "request", payload)
        if invalid is not None:
            return _error(
                422,
                invalid.description,
                error_code=invalid.code.value,
                error_details=invalid.details,
            )
        try:
            answer = await gateway.call(station_id, action, payload, timeout=timeout)
        except StationOffline as exc:
            raise HTTPException(409, f"station {station_id!r} is not connected: {exc}") from exc
        except CallTimeout as exc:
            return _error(504, f"station {station_id!r}: {exc.description}")
        except OcppError as exc:
            return _error(
                502,
                f"station {station_id!r} refused {action}: {exc.description or exc.code.value}",
                error_code=exc.code.value,
                error_details=exc.details,
            )
        return JSONResponse(answer)

    # -- transactions -----------------------------------------------------------------

    @router.get(
        "/transactions",
        response_model=list[TransactionOut],
        responses=_responses(422),
        tags=["transactions"],
    )
    async def list_transactions(
        station: Annotated[str | None, Query(description="Only this station's.")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[TransactionOut]:
        """Transactions with their energy and hygiene flags; meter values are in the detail view."""
        if station is not None:
            _station_id(station, "station")
        found = await store_getter().list_transactions(station, limit=limit, offset=offset)
        return [_transaction(t, TransactionOut) for t in found]

    @router.get(
        "/transactions/{tx_id}",
        response_model=TransactionDetailOut,
        responses=_responses(404, 422),
        tags=["transactions"],
    )
    async def get_transaction(tx_id: int) -> TransactionDetailOut:
        """One transaction with its meter values and hygiene flags."""
        found = await store_getter().get_transaction(tx_id)
        if found is None:
            raise HTTPException(404, f"no transaction {tx_id}")
        return _transaction(found, TransactionDetailOut)

    # -- id tokens --------------------------------------------------------------------

    @router.get("/id-tokens", response_model=list[IdTokenOut], tags=["id-tokens"])
    async def list_id_tokens() -> list[IdTokenOut]:
        """Every id token the CSMS knows."""
        found = await store_getter().list_id_tokens()
        return [_id_token_out(t) for t in found]

    @router.get(
        "/id-tokens/{token}",
        response_model=IdTokenOut,
        responses=_responses(404, 422),
        tags=["id-tokens"],
    )
    async def get_id_token(token: str) -> IdTokenOut:
        found = await store_getter().get_id_token(_id_token(token))
        if found is None:
            raise HTTPException(404, f"no id token {token!r}")
        return _id_token_out(found)

    @router.put(
        "/id-tokens/{token}",
        response_model=IdTokenOut,
        responses={201: {"model": IdTokenOut, "description": "Created."}, **_responses(422)},
        tags=["id-tokens"],
    )
    async def put_id_token(token: str, body: IdTokenIn, response: Response) -> IdTokenOut:
        """Create (201) or replace an id token: status, expiry, group (parent) and type."""
        store = store_getter()
        existed = await store.get_id_token(_id_token(token)) is not None
        saved = await store.put_id_token(
            IdTokenRecord(
                id_token=token,
                status=body.status.value,
                expiry=body.expiry,
                parent_id_token=body.parent_id_token,
                token_type=body.token_type.value,
            )
        )
        response.status_code = 200 if existed else 201
        return _id_token_out(saved)

    @router.delete(
        "/id-tokens/{token}",
        status_code=204,
        response_class=Response,
        responses=_responses(404, 422),
        tags=["id-tokens"],
    )
    async def delete_id_token(token: str) -> Response:
        if not await store_getter().delete_id_token(_id_token(token)):
            raise HTTPException(404, f"no id token {token!r}")
        return Response(status_code=204)

    return router


# -- record to model ----------------------------------------------------------------------

_TxOut = TypeVar("_TxOut", TransactionOut, TransactionDetailOut)


def _connector(c: ConnectorStatus) -> ConnectorOut:
    return ConnectorOut.model_validate(c)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _as_utc(value)


def _station_json(
    r: StationRecord,
    live: OcppVersion | None,
    violations: Mapping[str, int],
    failed_logins: Mapping[str, int],
) -> dict[str, Any]:
    """What :class:`StationOut` holds of a station, as plain values for ``to_json``
    (``test_station_list_is_what_each_station_shows`` keeps the two the same)."""
    sid = r.station_id
    return {
        "station_id": sid,
        "connected": live is not None,
        "ocpp_version": live.value if live is not None else r.ocpp_version,
        "vendor": r.vendor,
        "model": r.model,
        "serial_number": r.serial_number,
        "firmware_version": r.firmware_version,
        "security_profile": r.security_profile,
        "lenient": r.lenient,
        "boot_status": r.boot_status,
        "has_password": r.has_password,
        "registered_at": _as_utc(r.registered_at),
        "last_boot": _utc_or_none(r.last_boot),
        "last_seen": _utc_or_none(r.last_seen),
        "clock_offset_s": r.clock_offset_s,
        "connectors": [
            {
                "evse_id": c.evse_id,
                "connector_id": c.connector_id,
                "status": c.status,
                "error_code": c.error_code,
                "updated_at": _as_utc(c.updated_at),
            }
            for c in r.connectors
        ],
        "protocol_violations": violations.get(sid, 0),
        "failed_logins": failed_logins.get(sid, 0),
    }


def _transaction(t: TransactionRecord, model: type[_TxOut]) -> _TxOut:
    fields: dict[str, Any] = {
        name: getattr(t, name) for name in TransactionOut.model_fields if name != "flags"
    }
    fields["flags"] = [_flag(f) for f in t.flags]
    if model is TransactionDetailOut:
        fields["meter_values"] = [_sample(s) for s in t.meter_values]
    return model(**fields)


def _flag(f: Flag) -> FlagOut:
    return FlagOut.model_validate(f)


def _sample(s: MeterSample) -> MeterSampleOut:
    return MeterSampleOut.model_validate(s)


def _id_token_out(t: IdTokenRecord) -> IdTokenOut:
    return IdTokenOut.model_validate(t)


def _unknown_action(action: str, versions: list[OcppVersion]) -> str:
    known = frozenset().union(*(csms_actions(v) for v in versions))
    spoken = " or ".join(f"OCPP {v.value}" for v in versions)
    why = f"{action!r} is not an action the CSMS sends in {spoken}"
    close = difflib.get_close_matches(action, sorted(known), n=3)
    if close:
        why += f"; did you mean {', '.join(close)}?"
    return why
