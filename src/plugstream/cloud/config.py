"""PlugStream Cloud's settings: one object, filled from `plugstream cloud serve` flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(slots=True)
class CloudConfig:
    host: str = "127.0.0.1"
    port: int = 9000
    db: str = "sqlite:///plugstream.db"  # SQLite file in the working directory by default
    api_token: str | None = None  # bearer token of the REST API; PLUGSTREAM_API_TOKEN
    auto_register: bool = False  # accept unknown stations (and register them) instead of refusing
    # Auto-registration is trust on first use: the first connection's Basic password (its
    # username the station id) becomes the station's. Registering a station that brings
    # no credentials (security profile 0: anyone may connect as it) needs this (which
    # turns auto-registration on by itself).
    auto_register_unsecured: bool = False
    # Failed logins (per station id / per source address) let through before the id or the
    # address is locked for login_lock_s, doubling per further failure up to login_lock_max_s;
    # a locked one is refused with 429 + Retry-After before any password hash is computed.
    login_failures_per_station: int = 5
    login_failures_per_address: int = 20
    login_lock_s: float = 1.0
    login_lock_max_s: float = 300.0
    # s a refusal for a locked id or address is held back before it is answered (at most,
    # and never past half the handshake deadline): each parallel guesser waits that long
    # before its next guess, where an at-once 429 let 200 of them spend a whole core.
    login_tarpit_s: float = 5.0
    # s, handed out in BootNotification; pings keep NAT alive in between
    heartbeat_interval: int = 3600
    boot_retry_interval: int = 60  # s a Pending or Rejected station waits to boot again
    # Retention (cloud/retention.py; `--retain messages=30d --retain refusals=90d`):
    # s a message log row / a refusal row (since last seen) is kept; 0 keeps forever.
    # A station's own security events are never deleted. Checked every retention_period s.
    retain_messages: float = 30 * 86400.0
    retain_refusals: float = 90 * 86400.0
    retention_period: float = 3600.0
    max_refusal_rows: int = 100_000  # refusal rows kept at most (storage/security.py)
    # Keep-alive is paid for in bytes on a station's (cellular) link: a ping and its pong
    # are ~60 bytes with TLS, so pings every 30 s alone would be ~170 KB a day, over the
    # 100 KB budget of an idle day. The station pings every WebSocketPingInterval, which
    # keeps its NAT mapping open from its side (any packet refreshes one); the cloud's
    # pings only need to find stations that went away silently: every 300 s (~17 KB a
    # day) with a 60 s pong deadline drops a dead station within 6 minutes.
    ping_interval: float = 300.0  # s between the cloud's WebSocket pings
    ping_timeout: float = 60.0  # s without a pong before a station is dropped
    call_timeout: float = 30.0  # s a station has to answer an operator's command
    max_frame_bytes: int = 1 << 20  # larger WebSocket messages are refused (close code 1009)
    # A hostile network opens connections and never finishes them. Each connection has
    # handshake_timeout s from its accept (the TLS handshake included) to send its whole
    # HTTP request head and, for a station, to be upgraded to a WebSocket; at most
    # max_pending_handshakes are in that state at once (counted once TLS is done; more
    # are closed at once), half of them at most from one source address; one
    # address (an IPv6 /64) opens at most connect_rate connections a second, in bursts
    # of connect_burst (connect_rate 0: no limit).
    # The rate's defaults let a whole fleet behind one NAT, or the benchmarks' stations
    # from 127.0.0.1 (bench/loadgen.py: 2,000 a second), connect at once.
    handshake_timeout: float = 10.0
    max_pending_handshakes: int = 1000
    # Beyond max_pending_handshakes, this many new connections wait for a slot in their
    # order (unread: the kernel keeps their bytes) instead of being closed: a fleet that
    # reconnects at once after a restart gets in as fast as handshakes complete, where
    # closed it would come back only after its reconnect back-off. 0: closed at once.
    max_waiting_handshakes: int = 20_000
    connect_rate: float = 2500.0
    connect_burst: int = 5000
    # PEM; with tls_key, serve wss:// and https:// (security profile 2)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # More (cert, key) pairs served beside tls_cert, one per other key type: OpenSSL keeps
    # one certificate per key type and picks the one the client's suites can use, so an
    # RSA and an ECDSA certificate make both suite families of A00.FR.318 negotiable.
    tls_extra_certs: tuple[tuple[Path, Path], ...] = ()
    # PEM of the CA(s) that sign station certificates (the CSMS root): with it the server
    # asks every TLS client for a certificate (security profile 3); stations of profile 2
    # on the same port still connect without one.
    tls_client_ca: Path | None = None
    # The CSO's name: when set, a profile-3 station's certificate must carry it in its
    # subject's O (organizationName) RDN (OCPP 2.0.1 part 2 A00.FR.404).
    tls_client_organization: str | None = None
    # The PKI directory of `plugstream pki init` (plugstream.pki.keystore.PKIStore): the
    # CSMS root signs station CSRs (SignCertificate), the manufacturer root identifies new
    # stations at the setup service, the firmware-signing key signs uploaded images.
    pki_dir: Path | None = None
    # Where uploaded firmware images and their metadata are kept (default: next to the db).
    firmware_dir: Path | None = None
    # Where uploaded station logs (GetLog, N01) are kept (default: "logs" beside the
    # firmware directory).
    logs_dir: Path | None = None
    # The contract certificate pool (certificates/contract_pool.py) that an EV's
    # Get15118EVCertificate (M01/M02) is forwarded to: the CSMS cannot answer it itself,
    # only the mobility operator signs the EV's contract certificate. None: answered
    # Failed (NoContractPool). The token (PLUGSTREAM_CONTRACT_POOL_TOKEN) is sent as a
    # bearer token; the CA (PEM) is what the pool's TLS certificate must chain to
    # (default: the system's store); the timeout stays under the EV's 5 s (ISO 15118-2).
    contract_pool_url: str | None = None
    contract_pool_token: str | None = None
    contract_pool_ca: Path | None = None
    contract_pool_timeout: float = 4.0
    # The https:// base URL stations reach this server at (firmware locations, setup
    # answers); default: built from host, port and whether TLS is on.
    public_url: str | None = None
    # `plugstream cloud serve --setup`: serve only the setup service (its own name and port).
    setup_only: bool = False
    # Largest REST request body (bytes); larger ones are refused with 413 before they are
    # read. A firmware upload has its own limit (firmware.api.MAX_IMAGE_BYTES, on disk).
    max_body_bytes: int = 1 << 20
    # `--log-format json`: every log record one JSON object per line on stderr
    # (plugstream.cloud.logs), uvicorn's too: uvicorn is then given no logging config.
    log_format: Literal["text", "json"] = "text"
    # A cluster (cloud/bus): the NATS server the gateway nodes meet on (`--bus nats://`),
    # None for the embedded single node; this node's name in it (`--node-id`), unique per
    # node; `--workers K` runs K gateway processes on this host sharing the port
    # (SO_REUSEPORT), named node_id-1 .. node_id-K.
    bus: str | None = None
    node_id: str = "node-1"
    # The cluster's name on the bus (`--cluster`): its subjects' first token and its
    # presence bucket's and event stream's names, so that one NATS serves several
    # clusters (staging beside production) without them seeing each other.
    cluster: str = "plugstream"
    workers: int = 1
