"""The tables, as SQLAlchemy Core. ``migrations/versions`` creates the same schema;
a test checks that the two agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from .coltypes import ExactDecimal, UTCDateTime

metadata = MetaData()

#: a 64-bit id that is SQLite's rowid alias there
BigId = BigInteger().with_variant(Integer(), "sqlite")

stations = Table(
    "stations",
    metadata,
    Column("station_id", String(255), primary_key=True),
    Column("password_hash", String(255)),
    Column("security_profile", Integer, nullable=False),
    Column("lenient", Boolean, nullable=False),
    Column("registered_at", UTCDateTime, nullable=False),
    Column("vendor", String(255)),
    Column("model", String(255)),
    Column("serial_number", String(255)),
    Column("firmware_version", String(255)),
    Column("ocpp_version", String(16)),
    Column("last_boot", UTCDateTime),
    Column("last_seen", UTCDateTime),
    Column("clock_offset_s", Float),
    Column("boot_status", String(16), nullable=False, server_default="Accepted"),
)

connectors = Table(
    "connectors",
    metadata,
    Column(
        "station_id",
        String(255),
        ForeignKey("stations.station_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("evse_id", Integer, nullable=False),
    Column("connector_id", Integer, nullable=False),
    Column("status", String(64), nullable=False),
    Column("error_code", String(64)),
    Column("updated_at", UTCDateTime, nullable=False),
    # 2.0.1: the running transaction's chargingState (TransactionEvent), None outside one
    Column("charging_state", String(32)),
    PrimaryKeyConstraint("station_id", "evse_id", "connector_id"),
)

id_tokens = Table(
    "id_tokens",
    metadata,
    Column("id_token", String(255), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("expiry", UTCDateTime),
    Column("parent_id_token", String(255)),
    Column("token_type", String(32), nullable=False),
)

transactions = Table(
    "transactions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(255), ForeignKey("stations.station_id"), nullable=False),
    Column("transaction_id", String(64)),  # the station's id (2.0.1), str(id) (1.6)
    Column("evse_id", Integer, nullable=False),
    Column("connector_id", Integer, nullable=False),
    Column("id_token", String(255)),
    Column("started_at", UTCDateTime),
    Column("stopped_at", UTCDateTime),
    Column("meter_start_wh", ExactDecimal),
    Column("meter_stop_wh", ExactDecimal),
    Column("baseline_wh", ExactDecimal),
    Column("baseline_pending", Boolean, nullable=False),
    Column("last_register_wh", ExactDecimal),
    Column("last_register_at", UTCDateTime),
    Column("energy_wh", ExactDecimal),
    Column("stop_reason", String(64)),
    Column("offline", Boolean, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("start_key", String(255)),  # 1.6: what makes a StartTransaction retry the same
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("station_id", "transaction_id", name="uq_transactions_station_tx"),
    Index("ix_transactions_start_key", "station_id", "start_key"),
    Index("ix_transactions_connector", "station_id", "evse_id", "connector_id"),
)

transaction_events = Table(
    "transaction_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "transaction_pk",
        Integer,
        ForeignKey("transactions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq_no", Integer, nullable=False),
    Column("event_type", String(16), nullable=False),
    Column("timestamp", UTCDateTime, nullable=False),
    Column("trigger_reason", String(64)),
    Column("offline", Boolean, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("transaction_pk", "seq_no", name="uq_transaction_events_seq"),
)

meter_values = Table(
    "meter_values",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("station_id", String(255), nullable=False),
    Column(
        "transaction_pk",
        Integer,
        ForeignKey("transactions.id", ondelete="CASCADE"),
    ),
    Column("tx_key", Integer, nullable=False),  # transaction_pk or 0: NULLs never clash
    Column("evse_id", Integer, nullable=False),
    Column("connector_id", Integer, nullable=False),
    Column("timestamp", UTCDateTime, nullable=False),
    Column("measurand", String(64), nullable=False),
    Column("phase", String(16), nullable=False),  # "" when none
    Column("location", String(16), nullable=False),  # "" when none
    Column("context", String(32)),
    Column("value", ExactDecimal, nullable=False),
    Column("unit", String(16)),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint(
        "station_id",
        "tx_key",
        "evse_id",
        "connector_id",
        "timestamp",
        "measurand",
        "phase",
        "location",
        name="uq_meter_values_sample",
    ),
    Index("ix_meter_values_transaction", "transaction_pk"),
)

flags = Table(
    "flags",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("station_id", String(255), nullable=False),
    Column(
        "transaction_pk",
        Integer,
        ForeignKey("transactions.id", ondelete="CASCADE"),
    ),
    Column("code", String(64), nullable=False),
    Column("detail", String(512), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    UniqueConstraint("transaction_pk", "code", "detail", name="uq_flags"),
    Index("ix_flags_station", "station_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("station_id", String(255), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("direction", String(8), nullable=False),
    Column("text", Text, nullable=False),
    Index("ix_messages_station_id", "station_id", "id"),
)

# -- trust: security events, the setup service's claims, the firmware repository -------

security_events = Table(
    "security_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("station_id", String(255), nullable=False),
    Column("type", String(50), nullable=False),  # the OCPP security event name
    Column("at", UTCDateTime, nullable=False),
    Column("tech_info", Text),
    # "station": a SecurityEventNotification; "gateway": a connection the CSMS refused
    Column("source", String(16), nullable=False),
    # A refusal is one row per (station_id, address, type), counted: ``at`` is the first,
    # ``last_seen`` the latest, ``tech_info`` the latest's. A station's event is its own
    # row (count 1, last_seen = at, address ""): never aggregated away.
    Column("address", String(64), nullable=False, server_default=""),  # the peer; "" unknown
    Column("count", BigInteger, nullable=False, server_default="1"),
    Column("last_seen", UTCDateTime, nullable=False),
    # the order of the rows' last writes (max + 1 on each): what "newest first" lists by
    Column("seq", BigInteger, nullable=False),
    Index("ix_security_events_station", "station_id", "seq"),
    Index("ix_security_events_seq", "seq"),
    Index("ix_security_events_source_last_seen", "source", "last_seen"),
    Index(
        "ux_security_events_refusal",
        "station_id",
        "address",
        "type",
        unique=True,
        sqlite_where=text("source = 'gateway'"),
        postgresql_where=text("source = 'gateway'"),
    ),
)

station_claims = Table(
    "station_claims",
    metadata,
    # the station's serial number: its id, the CN of its manufacturer certificate
    Column("serial_number", String(255), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("csms_url", Text),  # NULL: PlugStream Cloud itself; else a third-party CSMS
    # a third-party CSMS at profile 2: the password the owner gave, which the station must
    # be handed in clear (it is its Basic-auth password there); never shown by the API
    Column("csms_password", String(40)),
    Column("ocpp_version", String(16), nullable=False),
    Column("security_profile", Integer, nullable=False),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("provisioned_at", UTCDateTime),  # the station's last setup call
)

firmware_images = Table(
    "firmware_images",
    metadata,
    Column("image_id", String(64), primary_key=True),
    Column("version", String(255), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("signature", Text, nullable=False),  # base64 ECDSA P-256 / SHA-256
    Column("signing_certificate", Text, nullable=False),  # PEM, leaf first
    Column("uploaded_at", UTCDateTime, nullable=False),
)

firmware_rollouts = Table(
    "firmware_rollouts",
    metadata,
    Column("rollout_id", BigId, primary_key=True, autoincrement=True),
    Column(
        "image_id",
        String(64),
        ForeignKey("firmware_images.image_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", UTCDateTime, nullable=False),
    Column("selector", Text, nullable=False),  # JSON: the station list or percentage asked for
    Column("retrieve_at", UTCDateTime, nullable=False),
    Column("install_at", UTCDateTime),
)

firmware_rollout_targets = Table(
    "firmware_rollout_targets",
    metadata,
    Column(
        "rollout_id",
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("firmware_rollouts.rollout_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("station_id", String(255), nullable=False),
    Column("request_id", Integer, nullable=False),  # requestId of the UpdateFirmware
    Column("status", String(32), nullable=False),  # the last FirmwareStatusNotification
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("rollout_id", "station_id"),
    Index("ix_rollout_targets_station", "station_id", "request_id"),
)

# The OCPP 2.0.1 functional blocks, each created by its own migration.

# --- device model (B), migration 0005 ---

# One row per (station, component, EVSE/connector, variable, attribute type). An absent
# instance is stored as "" and an absent EVSE / connector as 0 (EVSEType ids are > 0), so
# that the key has no NULL and a later report updates the row in place.
device_variables = Table(
    "device_variables",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("component", String(50), nullable=False),
    Column("component_instance", String(50), nullable=False),
    Column("evse_id", Integer, nullable=False),
    Column("connector_id", Integer, nullable=False),
    Column("variable", String(50), nullable=False),
    Column("variable_instance", String(50), nullable=False),
    Column("attribute_type", String(8), nullable=False),  # Actual, Target, MinSet, MaxSet
    Column("value", Text),  # string[0..2500]; NULL: not reported (e.g. WriteOnly)
    Column("mutability", String(16)),
    Column("persistent", Boolean),
    Column("constant", Boolean),
    Column("unit", String(16)),
    Column("data_type", String(20)),
    Column("min_limit", ExactDecimal),
    Column("max_limit", ExactDecimal),
    Column("values_list", Text),  # string[0..1000]
    Column("supports_monitoring", Boolean),
    Column("source", String(16), nullable=False),  # NotifyReport, GetVariables, ...
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint(
        "station_id",
        "component",
        "component_instance",
        "evse_id",
        "connector_id",
        "variable",
        "variable_instance",
        "attribute_type",
    ),
)

# The GetBaseReport / GetReport requests the cloud sent, and the NotifyReport parts seen.
device_reports = Table(
    "device_reports",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("request_id", Integer, nullable=False),
    Column("report_base", String(32)),  # GetBaseReport's; NULL for a GetReport
    Column("requested_at", UTCDateTime),  # NULL: a report the cloud did not ask for
    Column("status", String(32), nullable=False),  # the station's answer, then Complete
    Column("parts", Integer, nullable=False),
    Column("items", Integer, nullable=False),
    Column("final_seq_no", Integer),  # seqNo of the part with tbc false, once it came
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("station_id", "request_id"),
)

# NotifyEvent's eventData, one row each; newest first by id.
station_events = Table(
    "station_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("station_id", String(255), nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("timestamp", UTCDateTime, nullable=False),  # the station's
    Column("received_at", UTCDateTime, nullable=False),
    Column("trigger", String(16), nullable=False),  # Alerting, Delta, Periodic
    Column("cause", Integer),
    Column("actual_value", Text, nullable=False),
    Column("tech_code", String(50)),
    Column("tech_info", Text),
    Column("cleared", Boolean),
    Column("transaction_id", String(36)),
    Column("variable_monitoring_id", Integer),
    Column("event_notification_type", String(32), nullable=False),
    Column("component", String(50), nullable=False),
    Column("component_instance", String(50), nullable=False),
    Column("evse_id", Integer, nullable=False),
    Column("connector_id", Integer, nullable=False),
    Column("variable", String(50), nullable=False),
    Column("variable_instance", String(50), nullable=False),
    Index("ix_station_events_station", "station_id", "id"),
)

# --- diagnostics (N), 0006 ---

# N04/N02: each station's variable monitors, as set through the cloud or reported.
variable_monitors = Table(
    "variable_monitors",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("monitor_id", Integer, nullable=False),  # VariableMonitoringType.id
    Column("component_name", String(50), nullable=False),
    Column("component_instance", String(50)),
    Column("evse_id", Integer),
    Column("connector_id", Integer),
    Column("variable_name", String(50), nullable=False),
    Column("variable_instance", String(50)),
    Column("type", String(32), nullable=False),  # MonitorEnumType
    Column("value", ExactDecimal, nullable=False),
    Column("severity", Integer, nullable=False),
    Column("transaction", Boolean, nullable=False),
    Column("source", String(16), nullable=False),  # "set" (SetVariableMonitoring) or "report"
    Column("request_id", Integer),  # the NotifyMonitoringReport that last reported it
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("station_id", "monitor_id"),
)

# GetMonitoringReport requests and each NotifyMonitoringReport part, as it arrives.
monitoring_reports = Table(
    "monitoring_reports",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("request_id", Integer, nullable=False),
    Column("criteria", Text, nullable=False),  # JSON: monitoringCriteria, componentVariable
    Column("status", String(32), nullable=False),  # the answer, then Complete
    Column("requested_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),  # the part with tbc false arrived
    PrimaryKeyConstraint("station_id", "request_id"),
)

monitoring_report_parts = Table(
    "monitoring_report_parts",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("request_id", Integer, nullable=False),
    Column("seq_no", Integer, nullable=False),
    Column("tbc", Boolean, nullable=False),
    Column("generated_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("monitors", Text, nullable=False),  # JSON: the part's MonitoringDataType list
    PrimaryKeyConstraint("station_id", "request_id", "seq_no"),
)

# N01: GetLog requests, their LogStatusNotification status and the uploaded file.
log_requests = Table(
    "log_requests",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("request_id", Integer, nullable=False),
    Column("log_type", String(32)),  # NULL: a requestId the cloud did not send
    Column("token", String(64)),  # the one-time upload token of remoteLocation
    Column("requested_at", UTCDateTime, nullable=False),
    Column("status", String(32), nullable=False),  # the GetLog answer, then LogStatus
    Column("status_at", UTCDateTime, nullable=False),
    Column("filename", String(255)),  # GetLogResponse.filename
    Column("upload_filename", String(255)),  # Content-Disposition of the upload
    Column("upload_size", BigInteger),
    Column("upload_sha256", String(64)),
    Column("uploaded_at", UTCDateTime),
    PrimaryKeyConstraint("station_id", "request_id"),
    Index("ux_log_requests_token", "token", unique=True),
)

# N09/N10: CustomerInformation requests, each NotifyCustomerInformation part as it
# arrives, and the data assembled once the last part (tbc false) is in.
customer_information = Table(
    "customer_information",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("request_id", Integer, nullable=False),
    Column("report", Boolean, nullable=False),
    Column("clear", Boolean, nullable=False),
    Column("customer", Text, nullable=False),  # JSON: idToken / customerIdentifier / cert
    Column("status", String(32), nullable=False),  # the answer, then Complete
    Column("requested_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("data", Text),  # the parts' data joined in seqNo order, once complete
    PrimaryKeyConstraint("station_id", "request_id"),
)

customer_information_parts = Table(
    "customer_information_parts",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("request_id", Integer, nullable=False),
    Column("seq_no", Integer, nullable=False),
    Column("tbc", Boolean, nullable=False),
    Column("generated_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("data", Text, nullable=False),
    PrimaryKeyConstraint("station_id", "request_id", "seq_no"),
)

# --- reservations (H), display messages (O), data transfer (P), 0007 ---

# A ReserveNow sent (H01): the row is kept before the CALL goes out, so its id is never
# given twice and an unanswered one is not lost. reservation_id is the ReserveNow id.
reservations = Table(
    "reservations",
    metadata,
    Column("reservation_id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(255), nullable=False),
    Column("evse_id", Integer),  # None: any EVSE (H01.FR.04)
    Column("id_token", String(36), nullable=False),
    Column("id_token_type", String(20), nullable=False),
    Column("group_id_token", String(36)),
    Column("expiry", UTCDateTime, nullable=False),
    Column("status", String(32), nullable=False),  # Pending, the answer, then updates
    Column("transaction_id", String(36)),  # the transaction that used it (H01.FR.15)
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_reservations_station", "station_id", "reservation_id"),
)

# The display messages a station has, as set by the CSMS or reported (O01, O03, O04).
display_messages = Table(
    "display_messages",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("message_id", Integer, nullable=False),  # MessageInfoType.id
    Column("priority", String(16), nullable=False),
    Column("state", String(16)),
    Column("info", Text, nullable=False),  # the whole MessageInfoType, JSON
    Column("status", String(32), nullable=False),  # Pending, the answer, or Reported
    Column("request_id", Integer),  # the GetDisplayMessages that last reported it
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("station_id", "message_id"),
)

# GetDisplayMessages sent, and how far their NotifyDisplayMessages parts have come.
display_message_requests = Table(
    "display_message_requests",
    metadata,
    Column("request_id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(255), nullable=False),
    Column("criteria", Text, nullable=False),  # JSON: id, priority, state asked for
    Column("status", String(32), nullable=False),  # Pending, the answer, then Complete
    Column("parts", Integer, nullable=False),  # NotifyDisplayMessages received
    Column("requested_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- tariffs and costs (I), 0008 ---

tariffs = Table(
    "tariffs",
    metadata,
    Column("tariff_id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("currency", String(3), nullable=False),  # ISO 4217
    # prices exclude VAT (cloud/tariffs/cost.py)
    Column("start_fee", ExactDecimal, nullable=False),
    Column("per_kwh", ExactDecimal, nullable=False),
    Column("per_charging_minute", ExactDecimal, nullable=False),
    Column("per_idle_minute", ExactDecimal, nullable=False),
    Column("vat_percent", ExactDecimal, nullable=False),
    Column("personal_message", Text),  # the tariff text shown to the driver (I01)
    Column("language", String(8)),
    Column("is_default", Boolean, nullable=False),
    Column("cost_updated_interval_s", Integer, nullable=False),  # 0: no interval
    Column("cost_updated_threshold", ExactDecimal, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

tariff_assignments = Table(
    "tariff_assignments",
    metadata,
    Column("scope", String(16), nullable=False),  # "station" or "group" (parent id token)
    Column("key", String(255), nullable=False),
    Column(
        "tariff_id",
        BigId,
        ForeignKey("tariffs.tariff_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("assigned_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("scope", "key"),
    Index("ix_tariff_assignments_tariff", "tariff_id"),
)

transaction_costs = Table(
    "transaction_costs",
    metadata,
    Column(
        "transaction_pk",
        Integer,
        ForeignKey("transactions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tariff_id", BigInteger),  # no foreign key: the cost outlives its tariff
    Column("tariff_name", String(255), nullable=False),
    Column("prices", Text, nullable=False),  # JSON: the tariff's prices when it started
    Column("currency", String(3), nullable=False),
    Column("last_seq_no", Integer, nullable=False),
    Column("charging_state", String(32)),
    Column("state_since", UTCDateTime),
    Column("charged", Boolean, nullable=False),
    Column("charging_s", ExactDecimal, nullable=False),
    Column("idle_s", ExactDecimal, nullable=False),
    Column("energy_wh", ExactDecimal, nullable=False),
    Column("total_cost", ExactDecimal, nullable=False),  # running, then final; VAT included
    Column("final", Boolean, nullable=False),
    Column("sent_cost", ExactDecimal),  # the last CostUpdated sent
    Column("sent_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- smart charging (K), 0009 ---
charging_profiles = Table(  # what the cloud set on a station, with the station's answer
    "charging_profiles",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("charging_profile_id", Integer, nullable=False),
    Column("evse_id", Integer, nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("stack_level", Integer, nullable=False),
    Column("transaction_id", String(64)),
    Column("profile", Text, nullable=False),  # JSON: the ChargingProfileType sent
    Column("status", String(32), nullable=False),  # the SetChargingProfile answer
    Column("source", String(16), nullable=False),  # "operator" or "site"
    Column("set_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("station_id", "charging_profile_id"),
)

reported_charging_profiles = Table(  # ReportChargingProfiles (K09), one row per profile
    "reported_charging_profiles",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("station_id", String(255), nullable=False),
    Column("request_id", Integer, nullable=False),
    Column("evse_id", Integer, nullable=False),
    Column("charging_limit_source", String(16), nullable=False),
    Column("charging_profile_id", Integer, nullable=False),
    Column("profile", Text, nullable=False),  # JSON: the ChargingProfileType reported
    Column("tbc", Boolean, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_reported_charging_profiles_station", "station_id", "request_id"),
)

charging_profile_requests = Table(  # GetChargingProfiles sent, by requestId (K09.FR.01)
    "charging_profile_requests",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("request_id", Integer, nullable=False),
    Column("criteria", Text, nullable=False),  # JSON: evseId and chargingProfile criteria
    Column("status", String(32), nullable=False),  # the answer, then Reported / Complete
    Column("asked_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("station_id", "request_id"),
)

charging_limits = Table(  # NotifyChargingLimit (K12) and ClearedChargingLimit (K13)
    "charging_limits",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("station_id", String(255), nullable=False),
    Column("evse_id", Integer),
    Column("charging_limit_source", String(16), nullable=False),
    Column("is_grid_critical", Boolean),
    Column("schedules", Text, nullable=False),  # JSON: chargingSchedule list, [] if none
    Column("received_at", UTCDateTime, nullable=False),
    Column("cleared_at", UTCDateTime),
    Index("ix_charging_limits_station", "station_id", "id"),
)

ev_charging_needs = Table(  # NotifyEVChargingNeeds (K15) and NotifyEVChargingSchedule
    "ev_charging_needs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("station_id", String(255), nullable=False),
    Column("evse_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # "needs" or "schedule"
    Column("max_schedule_tuples", Integer),
    Column("body", Text, nullable=False),  # JSON: chargingNeeds or chargingSchedule
    Column("status", String(16), nullable=False),  # the CSMS's answer
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_ev_charging_needs_station", "station_id", "id"),
)

sites = Table(  # a grid connection shared by stations: its maximum current per phase
    "sites",
    metadata,
    Column("site_id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("max_current_a", ExactDecimal, nullable=False),
    Column("phases", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

site_stations = Table(
    "site_stations",
    metadata,
    Column(
        "site_id",
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("sites.site_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("station_id", String(255), nullable=False),
    Column("max_current_a", ExactDecimal, nullable=False),  # the station's own maximum
    PrimaryKeyConstraint("site_id", "station_id"),
    UniqueConstraint("station_id", name="uq_site_stations_station"),  # one site per station
)

# --- ISO 15118 certificates (C, M) and published firmware (L), 0010 ---

#: what the V2G sub-CA (and root) issued, and revoked: the OCSP responder's answers
issued_certificates = Table(
    "issued_certificates",
    metadata,
    Column("issuer_key_id", String(64), nullable=False),  # SHA-256 of the issuer's SPKI, hex
    Column("serial_number", String(40), nullable=False),  # hex, no leading zeroes
    Column("certificate_type", String(32), nullable=False),  # V2GCertificate, V2GSubCA, ...
    Column("subject", Text, nullable=False),
    Column("station_id", String(255)),  # the station that asked for it, if one did
    Column("issued_at", UTCDateTime, nullable=False),
    Column("not_valid_after", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("revocation_reason", String(32)),
    PrimaryKeyConstraint("issuer_key_id", "serial_number"),
    Index("ix_issued_certificates_serial", "serial_number"),
)

#: PublishFirmware to a Local Controller (L03) and its last PublishFirmwareStatusNotification
firmware_publications = Table(
    "firmware_publications",
    metadata,
    Column("station_id", String(255), nullable=False),
    Column("request_id", Integer, nullable=False),
    Column("image_id", String(64)),  # the repository's image; None once deleted there
    Column("location", Text, nullable=False),
    Column("checksum", String(32), nullable=False),  # MD5, hex (L03.FR.02)
    Column("status", String(32), nullable=False),
    Column("published_locations", Text),  # JSON list: the URIs of status Published
    Column("requested_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("station_id", "request_id"),
)

# --- operators' accounts and web sessions (the console, issue 16), 0011 ---

operators = Table(  # who may log in to the console and the REST API with a session
    "operators",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),  # argon2id; never shown
    Column("role", String(16), nullable=False),  # admin, operator or read-only
    Column("created_at", UTCDateTime, nullable=False),
)

operator_sessions = Table(  # a logged-in browser: the SHA-256 of its cookie, not the cookie
    "operator_sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),  # SHA-256 of the session id, hex
    Column("username", String(64), nullable=False),
    Column("role", String(16), nullable=False),  # the role at login
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_operator_sessions_username", "username"),
)

# --- the bus's event outbox (cloud/bus/events.py), 0013 ---

event_outbox = Table(  # what stations reported, kept until NATS JetStream acknowledged it
    "event_outbox",
    metadata,
    # the event's seq: in the order events were stored (AUTOINCREMENT: SQLite never reuses
    # the id of a row relayed and deleted, so a seq is never published twice)
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # bus.events.KINDS
    Column("station_id", String(255), nullable=False),
    Column("node", String(32), nullable=False),  # the node that took the event in
    Column("at", UTCDateTime, nullable=False),  # when the cloud took it in
    Column("data", Text, nullable=False),  # the event's data: one JSON object
    sqlite_autoincrement=True,
)
