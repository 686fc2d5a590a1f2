"""Id tokens: what the CSMS answers a station's Authorize with."""

from __future__ import annotations

import enum

from fastapi import HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import StoreDep, UtcDateTime, UtcInput, guarded_router, responses
from plugstream.cloud.storage.records import IdTokenRecord

__all__ = ["ID_TOKEN_MAX", "IdTokenIn", "IdTokenOut", "IdTokenStatus", "IdTokenType", "router"]

ID_TOKEN_MAX = 36  # 2.0.1 IdTokenType.idToken is string[36] (1.6 idTag is CiString20)


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


class IdTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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


def _id_token(value: str) -> str:
    if not 1 <= len(value) <= ID_TOKEN_MAX:
        raise HTTPException(
            422, f"id token must be 1 to {ID_TOKEN_MAX} characters long, not {len(value)}"
        )
    return value


router = guarded_router(tags=["id-tokens"])


@router.get("/id-tokens", response_model=list[IdTokenOut])
async def list_id_tokens(store: StoreDep) -> list[IdTokenOut]:
    """Every id token the CSMS knows."""
    return [IdTokenOut.model_validate(t) for t in await store.id_tokens.list()]


@router.get("/id-tokens/{token}", response_model=IdTokenOut, responses=responses(404, 422))
async def get_id_token(token: str, store: StoreDep) -> IdTokenOut:
    found = await store.id_tokens.get(_id_token(token))
    if found is None:
        raise HTTPException(404, f"no id token {token!r}")
    return IdTokenOut.model_validate(found)


@router.put(
    "/id-tokens/{token}",
    response_model=IdTokenOut,
    responses={201: {"model": IdTokenOut, "description": "Created."}, **responses(422)},
)
async def put_id_token(
    token: str, body: IdTokenIn, response: Response, store: StoreDep
) -> IdTokenOut:
    """Create (201) or replace an id token: status, expiry, group (parent) and type."""
    existed = await store.id_tokens.get(_id_token(token)) is not None
    saved = await store.id_tokens.put(
        IdTokenRecord(
            id_token=token,
            status=body.status.value,
            expiry=body.expiry,
            parent_id_token=body.parent_id_token,
            token_type=body.token_type.value,
        )
    )
    response.status_code = 200 if existed else 201
    return IdTokenOut.model_validate(saved)


@router.delete(
    "/id-tokens/{token}",
    status_code=204,
    response_class=Response,
    responses=responses(404, 422),
)
async def delete_id_token(token: str, store: StoreDep) -> Response:
    if not await store.id_tokens.delete(_id_token(token)):
        raise HTTPException(404, f"no id token {token!r}")
    return Response(status_code=204)
