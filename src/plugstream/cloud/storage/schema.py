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

# Issue 15: one section per functional block, each created by its own migration (0005-0010).

# --- [B] device model ---

# --- [N] diagnostics ---

# --- [HOP] reservations, display messages, data transfer ---

# --- [I] tariffs ---

# --- [K] smart charging ---

# --- [CLM] certificates, published firmware ---
