"""The gateway as a FastAPI dependency, for the routers that reach connected stations.

Apart from :mod:`.common` because it names the gateway's type: :mod:`.common` must not
import the gateway, whose own modules are below the routers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from plugstream.cloud.gateway import Gateway

__all__ = ["GatewayDep", "get_gateway"]


async def get_gateway(request: Request) -> Gateway:
    """The OCPP gateway, built in the app's lifespan (``app.state.gateway``)."""
    gateway: Gateway | None = getattr(request.app.state, "gateway", None)
    if gateway is None:
        raise RuntimeError("app.state.gateway is not set: the app's lifespan sets it")
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
