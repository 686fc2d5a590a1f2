"""PlugStream Cloud's settings: one object, filled from `plugstream cloud serve` flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(slots=True)
class CloudConfig:
    host: str = "127.0.0.1"
    port: int = 9000
    db: str = "sqlite:///plugstream.db"  # SQLite file in the working directory by default
    api_token: str | None = None  # bearer token of the REST API; PLUGSTREAM_API_TOKEN
    auto_register: bool = False  # accept unknown stations (and register them) instead of refusing
    # s, handed out in BootNotification; pings keep NAT alive in between
    heartbeat_interval: int = 3600
    boot_retry_interval: int = 60  # s a Pending or Rejected station waits to boot again
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
    # PEM; with tls_key, serve wss:// and https:// (security profile 2)
    tls_cert: Path | None = None
    tls_key: Path | None = None
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
    # The https:// base URL stations reach this server at (firmware locations, setup
    # answers); default: built from host, port and whether TLS is on.
    public_url: str | None = None
    # `plugstream cloud serve --setup`: serve only the setup service (its own name and port).
    setup_only: bool = False
