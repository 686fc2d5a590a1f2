"""What :mod:`plugstream.cloud.uvicorn_compat` relies on of uvicorn's internals is still there.

The module subclasses uvicorn's websockets-sansio and h11 protocols and its server, and
overrides or calls methods and attributes that are not uvicorn's public API. These tests
fail, saying what to re-check, when the installed uvicorn is outside the version pinned
in ``pyproject.toml`` or when one of those internals has gone or changed its signature.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from packaging.requirements import Requirement
from packaging.version import Version
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from plugstream.cloud import uvicorn_compat
from plugstream.cloud.uvicorn_compat import UVICORN_TESTED

pytestmark = pytest.mark.unit

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
RECHECK = (
    "re-read src/plugstream/cloud/uvicorn_compat.py against uvicorn's source "
    "(LeanWebSocketProtocol, TlsHttpProtocol, GuardedHttpProtocol, CloudServer), then move "
    "the pin in "
    "pyproject.toml and UVICORN_TESTED together"
)


def _pinned() -> Requirement:
    dependencies: list[str] = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (line,) = [d for d in dependencies if Requirement(d).name == "uvicorn"]
    return Requirement(line)


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def _source(cls: type) -> str:
    return inspect.getsource(cls)


def test_the_installed_uvicorn_is_the_pinned_minor_version() -> None:
    pin = _pinned()
    installed = Version(uvicorn.__version__)
    tested = Version(UVICORN_TESTED)
    wanted = {f">={tested}", f"<{tested.major}.{tested.minor + 1}"}
    assert {str(s) for s in pin.specifier} == wanted, (
        f"pyproject.toml pins {pin}, but uvicorn_compat.UVICORN_TESTED is {UVICORN_TESTED}: "
        + RECHECK
    )
    assert installed in pin.specifier, (
        f"uvicorn {installed} is installed, outside the pinned {pin.specifier}: " + RECHECK
    )


# -- the websockets-sansio protocol (LeanWebSocketProtocol) ---------------------------


@pytest.mark.parametrize(
    ("method", "parameters"),
    [
        ("__init__", ["self", "config", "server_state", "app_state", "_loop"]),
        ("data_received", ["self", "data"]),
        ("send_keepalive_ping", ["self"]),
        ("handle_connect", ["self", "event"]),
        ("send", ["self", "message"]),
        ("connection_lost", ["self", "exc"]),
    ],
)
def test_the_websocket_protocol_methods_overridden_are_there(
    method: str, parameters: list[str]
) -> None:
    found = getattr(WebSocketsSansIOProtocol, method, None)
    assert found is not None, f"WebSocketsSansIOProtocol.{method} is gone: " + RECHECK
    assert _parameters(found) == parameters, (
        f"WebSocketsSansIOProtocol.{method}{inspect.signature(found)} changed: " + RECHECK
    )
    assert method in vars(uvicorn_compat.LeanWebSocketProtocol)


@pytest.mark.parametrize(
    "attribute",
    [
        "loop",
        "transport",
        "scope",
        "ping_interval",
        "ping_timer",
        "close_sent",
        "handshake_complete",
        "request",
        "response",
        "queue",
        "writable",
    ],
)
def test_the_websocket_protocol_attributes_used_are_there(attribute: str) -> None:
    assert re.search(rf"\bself\.{attribute}\b[^=\n]*=[^=]", _source(WebSocketsSansIOProtocol)), (
        f"WebSocketsSansIOProtocol no longer sets self.{attribute}: " + RECHECK
    )


@pytest.mark.parametrize(
    ("attribute", "replacement"),
    [("queue", uvicorn_compat.ReceiveQueue), ("writable", uvicorn_compat.WritableFlag)],
)
def test_the_slim_queue_and_flag_have_every_method_the_protocol_calls(
    attribute: str, replacement: type
) -> None:
    """The protocol's ``asyncio.Queue`` and ``asyncio.Event`` are replaced by slimmer
    objects: each method uvicorn calls on them must be one they have."""
    called = set(re.findall(rf"\bself\.{attribute}\.(\w+)\(", _source(WebSocketsSansIOProtocol)))
    assert called, f"WebSocketsSansIOProtocol no longer uses self.{attribute}: " + RECHECK
    missing = sorted(name for name in called if not hasattr(replacement, name))
    assert missing == [], (
        f"WebSocketsSansIOProtocol calls self.{attribute}.{missing}, which "
        f"{replacement.__name__} lacks: " + RECHECK
    )


def test_the_handshake_request_and_response_are_read_only_before_accept() -> None:
    """LeanWebSocketProtocol drops ``request`` and ``response`` once the handshake is
    done: uvicorn must still set them in ``handle_connect`` (from the parsed request)."""
    source = inspect.getsource(WebSocketsSansIOProtocol.handle_connect)
    assert "self.request = event" in source and "self.response =" in source, (
        "WebSocketsSansIOProtocol.handle_connect no longer keeps request/response: " + RECHECK
    )


# -- the h11 protocol (TlsHttpProtocol) -----------------------------------------------


def test_the_h11_protocol_connection_made_and_app_are_there() -> None:
    assert _parameters(H11Protocol.connection_made) == ["self", "transport"], (
        f"H11Protocol.connection_made{inspect.signature(H11Protocol.connection_made)} "
        "changed: " + RECHECK
    )
    assert "self.app = " in inspect.getsource(H11Protocol.__init__), (
        "H11Protocol no longer keeps the ASGI app in self.app: " + RECHECK
    )
    assert "app = self.app" in _source(H11Protocol), (
        "H11Protocol no longer reads self.app per request: " + RECHECK
    )


def test_the_websocket_handshake_is_complete_once_the_app_accepted() -> None:
    """The handshake deadline handed over at the upgrade ends when ``handshake_complete``
    is set: uvicorn must set it when the app accepts (and when the connection is lost)."""
    send = inspect.getsource(WebSocketsSansIOProtocol.send)
    assert "websocket.accept" in send and "self.handshake_complete = True" in send, (
        "WebSocketsSansIOProtocol.send no longer completes the handshake on accept: " + RECHECK
    )
    lost = inspect.getsource(WebSocketsSansIOProtocol.connection_lost)
    assert "self.handshake_complete = True" in lost, (
        "WebSocketsSansIOProtocol.connection_lost no longer completes the handshake: " + RECHECK
    )


# -- the handshake guard (GuardedHttpProtocol) ----------------------------------------


@pytest.mark.parametrize(
    ("method", "parameters"),
    [
        ("connection_made", ["self", "transport"]),
        ("connection_lost", ["self", "exc"]),
        ("data_received", ["self", "data"]),
        ("handle_websocket_upgrade", ["self", "event"]),
    ],
)
def test_the_h11_protocol_methods_the_guard_overrides_are_there(
    method: str, parameters: list[str]
) -> None:
    found = getattr(H11Protocol, method, None)
    assert found is not None, f"H11Protocol.{method} is gone: " + RECHECK
    assert _parameters(found) == parameters, (
        f"H11Protocol.{method}{inspect.signature(found)} changed: " + RECHECK
    )
    assert method in vars(uvicorn_compat.GuardedHttpProtocol)


def test_the_h11_protocol_hands_the_connection_to_the_websocket_protocol_it_made() -> None:
    """The guard finds the WebSocket protocol of an upgrade with ``transport.get_protocol()``
    right after ``handle_websocket_upgrade``: uvicorn must make it and set it there."""
    source = inspect.getsource(H11Protocol.handle_websocket_upgrade)
    assert "self.ws_protocol_class(" in source and "set_protocol(protocol)" in source, (
        "H11Protocol.handle_websocket_upgrade no longer sets the WebSocket protocol: " + RECHECK
    )


def test_the_h11_protocol_keeps_its_h11_connection_client_and_loop() -> None:
    """The guard reads the request head's progress from ``self.conn.their_state`` (h11),
    the peer from ``self.client`` and times with ``self.loop``."""
    init = inspect.getsource(H11Protocol.__init__)
    assert "self.conn = h11.Connection(" in init and "self.loop = " in init, (
        "H11Protocol no longer keeps self.conn (h11) and self.loop: " + RECHECK
    )
    assert "self.client = get_remote_addr(transport)" in inspect.getsource(
        H11Protocol.connection_made
    ), "H11Protocol.connection_made no longer sets self.client: " + RECHECK
    assert "self._unset_keepalive_if_required()" in inspect.getsource(H11Protocol.data_received), (
        "H11Protocol.data_received no longer stops the keep-alive timer at any byte "
        "(the guard's deadline of a later request head may be moot): " + RECHECK
    )


# -- the server (CloudServer) and its configuration -----------------------------------


def test_the_server_capture_signals_and_handle_exit_are_there() -> None:
    assert _parameters(uvicorn.Server.capture_signals) == ["self"], (
        "uvicorn.Server.capture_signals changed: " + RECHECK
    )
    assert _parameters(uvicorn.Server.handle_exit) == ["self", "sig", "frame"], (
        "uvicorn.Server.handle_exit changed: " + RECHECK
    )
    source = _source(uvicorn.Server)
    for attribute in ("started", "servers", "should_exit"):
        assert f"self.{attribute}" in source, (
            f"uvicorn.Server no longer has self.{attribute}: " + RECHECK
        )


def test_the_config_takes_protocol_classes_and_an_ssl_context_factory() -> None:
    parameters = _parameters(uvicorn.Config.__init__)
    for name in ("ws", "http", "ssl_context_factory", "ws_ping_interval", "ws_ping_timeout"):
        assert name in parameters, f"uvicorn.Config no longer takes {name}=: " + RECHECK


# -- the handshake deadline under TLS (GuardedHttpProtocol.__init__, CloudServer.startup) --


def test_the_h11_protocol_is_made_per_connection_with_its_loop() -> None:
    """The guard's deadline counts from ``GuardedHttpProtocol.__init__`` (accept, before
    any TLS handshake): uvicorn must make the protocol in the loop's protocol factory,
    with these parameters, and keep the loop in ``self.loop``."""
    assert _parameters(H11Protocol.__init__) == [
        "self",
        "config",
        "server_state",
        "app_state",
        "_loop",
    ], f"H11Protocol.__init__{inspect.signature(H11Protocol.__init__)} changed: " + RECHECK
    assert "__init__" in vars(uvicorn_compat.GuardedHttpProtocol)
    startup = inspect.getsource(uvicorn.Server.startup)
    assert "config.http_protocol_class(" in startup, (
        "uvicorn.Server.startup no longer makes config.http_protocol_class per connection: "
        + RECHECK
    )


def test_the_server_startup_creates_its_tls_listener_without_a_handshake_timeout() -> None:
    """CloudServer.startup shadows the running loop's ``create_server`` for the length of
    uvicorn's startup to add ``ssl_handshake_timeout``: uvicorn must still take the loop
    with ``asyncio.get_running_loop()`` and call ``loop.create_server(..., ssl=...)``
    there, and pass no timeout of its own (which would win over the guard's)."""
    assert _parameters(uvicorn.Server.startup) == ["self", "sockets"], (
        f"uvicorn.Server.startup{inspect.signature(uvicorn.Server.startup)} changed: " + RECHECK
    )
    assert "startup" in vars(uvicorn_compat.CloudServer)
    source = inspect.getsource(uvicorn.Server.startup)
    assert "loop = asyncio.get_running_loop()" in source, (
        "uvicorn.Server.startup no longer takes the running loop: " + RECHECK
    )
    calls = re.findall(r"loop\.create_server\((.*?)\)\n", source, re.DOTALL)
    assert calls and all("ssl=config.ssl" in call for call in calls), (
        "uvicorn.Server.startup no longer calls loop.create_server(..., ssl=config.ssl): " + RECHECK
    )
    assert "is_ssl" in inspect.getsource(uvicorn.Config), (
        "uvicorn.Config no longer says whether it serves TLS (is_ssl): " + RECHECK
    )
    assert "ssl_handshake_timeout" not in source, (
        "uvicorn.Server.startup passes an ssl_handshake_timeout now (the guard's deadline "
        "may no longer be the listener's): " + RECHECK
    )
