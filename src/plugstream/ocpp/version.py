"""The OCPP-J versions we speak, named as the WebSocket subprotocols name them."""

from __future__ import annotations

import enum


class OcppVersion(enum.Enum):
    """One OCPP-J version; ``value`` is the spec's version string."""

    V16 = "1.6"
    V201 = "2.0.1"
    V21 = "2.1"

    @property
    def subprotocol(self) -> str:
        """The ``Sec-WebSocket-Protocol`` token (OCPP-J 1.6 §3.1.2, 2.0.1 part 4 §3.1.2)."""
        return "ocpp" + self.value

    @property
    def has_send(self) -> bool:
        """Whether CALLRESULTERROR and SEND (message types 5 and 6) exist; they came in 2.1."""
        return self is OcppVersion.V21

    @classmethod
    def from_subprotocol(cls, token: str) -> OcppVersion:
        for version in cls:
            if version.subprotocol == token:
                return version
        raise ValueError(f"not an OCPP subprotocol we speak: {token!r}")

    @classmethod
    def parse(cls, text: str) -> OcppVersion:
        """Accept ``1.6``, ``1.6J``, ``2.0.1``, ``ocpp2.0.1``, ``2.1``; for CLI flags and config."""
        cleaned = text.strip().lower().removeprefix("ocpp").removesuffix("j")
        for version in cls:
            if version.value == cleaned:
                return version
        choices = ", ".join(v.value for v in cls)
        raise ValueError(f"unknown OCPP version {text!r} (choose from {choices})")


SUBPROTOCOLS: tuple[str, ...] = tuple(v.subprotocol for v in OcppVersion)
