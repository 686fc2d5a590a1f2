"""The CSMS handlers of each OCPP version, as the application registers them with the
gateway (which imports no handler module)."""

from __future__ import annotations

from plugstream.cloud.context import HandlersFactory
from plugstream.cloud.handlers16 import Csms16
from plugstream.cloud.handlers201 import Csms21, Csms201
from plugstream.ocpp import OcppVersion

__all__ = ["csms_handlers"]


def csms_handlers() -> dict[OcppVersion, HandlersFactory]:
    """The CSMS handlers per version; 2.1 reuses the 2.0.1 ones."""
    return {
        OcppVersion.V16: Csms16,
        OcppVersion.V201: Csms201,
        OcppVersion.V21: Csms21,
    }
