"""Every message a 2.0.1 charging station sends has a handler in PlugStream Cloud: none is
answered NotSupported / NotImplemented (issue 15; an independent run of the OCA's CSMS
test cases failed 56 cases, nearly all on messages the cloud had no handler for).

The list of station-to-CSMS actions is the one the ``ocpp`` package's official schemas
and the spec's message directions give (:func:`plugstream.ocpp.station_actions`);
Csms201's routes are what the gateway dispatches to.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from plugstream.cloud.config import CloudConfig
from plugstream.cloud.context import HandlerContext
from plugstream.cloud.handlers import csms_handlers
from plugstream.ocpp import OcppVersion, csms_actions, station_actions

pytestmark = pytest.mark.unit


def routes() -> frozenset[str]:
    """The actions the cloud's 2.0.1 handlers answer."""
    factory = csms_handlers()[OcppVersion.V201]
    context = HandlerContext(cast(Any, None), CloudConfig())  # routes need no store
    return factory("ANY", context).supported_actions()


def test_every_station_to_csms_message_of_2_0_1_has_a_handler() -> None:
    sent_by_stations = station_actions(OcppVersion.V201)
    missing = sent_by_stations - routes()
    assert not missing, f"answered NotSupported by the cloud: {sorted(missing)}"


def test_the_list_is_the_spec_s_and_names_the_messages_that_were_missing() -> None:
    sent_by_stations = station_actions(OcppVersion.V201)
    assert "CostUpdated" in csms_actions(OcppVersion.V201) - sent_by_stations  # CSMS -> station
    was_missing = {
        "NotifyReport",
        "NotifyMonitoringReport",
        "NotifyCustomerInformation",
        "LogStatusNotification",
        "ReportChargingProfiles",
        "NotifyChargingLimit",
        "ClearedChargingLimit",
        "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule",
        "PublishFirmwareStatusNotification",
        "Get15118EVCertificate",
        "GetCertificateStatus",
        "ReservationStatusUpdate",
        "NotifyDisplayMessages",
        "DataTransfer",
    }
    assert was_missing <= sent_by_stations
    assert was_missing <= routes()
