"""Who starts which action: the charging station or the CSMS.

The schemas tell which actions exist; the specs' message sections tell the
direction. DataTransfer goes both ways. A CSMS uses this to know which actions
an operator may send to a station, a station which ones it may receive.
"""

from __future__ import annotations

from typing import Final

from plugstream.ocpp.schemas import schemas
from plugstream.ocpp.version import OcppVersion

_BOTH: Final = frozenset({"DataTransfer"})

_FROM_STATION_16: Final = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        # Security extension (OCPP 1.6 Security Whitepaper edition 3)
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
    }
)

_FROM_STATION_201: Final = frozenset(
    {
        "Authorize",
        "BootNotification",
        "ClearedChargingLimit",
        "FirmwareStatusNotification",
        "Get15118EVCertificate",
        "GetCertificateStatus",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "NotifyChargingLimit",
        "NotifyCustomerInformation",
        "NotifyDisplayMessages",
        "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule",
        "NotifyEvent",
        "NotifyMonitoringReport",
        "NotifyReport",
        "PublishFirmwareStatusNotification",
        "ReportChargingProfiles",
        "ReservationStatusUpdate",
        "SecurityEventNotification",
        "SignCertificate",
        "StatusNotification",
        "TransactionEvent",
    }
)

_FROM_STATION_21: Final = _FROM_STATION_201 | frozenset(
    {
        "BatterySwap",
        "ClosePeriodicEventStream",
        "GetCertificateChainStatus",
        "NotifyDERAlarm",
        "NotifyDERStartStop",
        "NotifyPeriodicEventStream",
        "NotifyPriorityCharging",
        "NotifySettlement",
        "OpenPeriodicEventStream",
        "PullDynamicScheduleUpdate",
        "ReportDERControl",
        "VatNumberValidation",
        "NotifyQRCodeScanned",
    }
)

_FROM_STATION: Final = {
    OcppVersion.V16: _FROM_STATION_16,
    OcppVersion.V201: _FROM_STATION_201,
    OcppVersion.V21: _FROM_STATION_21,
}


def station_actions(version: OcppVersion) -> frozenset[str]:
    """Actions a charging station sends (CALLs or SENDs) in ``version``."""
    known = schemas(version).call_actions | schemas(version).send_actions
    return (_FROM_STATION[version] & known) | (_BOTH & known)


def csms_actions(version: OcppVersion) -> frozenset[str]:
    """Actions a CSMS sends in ``version``: every other one, plus DataTransfer."""
    known = schemas(version).call_actions | schemas(version).send_actions
    return (known - _FROM_STATION[version]) | (_BOTH & known)
