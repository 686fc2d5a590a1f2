"""The vendor extensions the cloud answers in a station's DataTransfer, sans-I/O.

A vendor handler is an async function registered for a (vendorId, messageId) pair with
:meth:`VendorRegistry.message` -- as ``@on`` is for an action::

    @VENDORS.message("com.example", "Hello")
    async def hello(request: VendorRequest) -> VendorAnswer:
        return VendorAnswer("Accepted", data={"hi": request.station_id})

``messageId`` None registers the vendor's handler of DataTransfers without one.
:meth:`VendorRegistry.resolve` says what a DataTransfer reaches: a handler, or the
status the spec asks for when there is none -- UnknownVendorId for a vendorId nobody
registered (P02.FR.06), UnknownMessageId for a messageId its vendor does not know
(P02.FR.07). vendorIds are reversed DNS names (P02.FR.03), compared case-insensitively.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from plugstream.cloud.context import HandlerContext

__all__ = [
    "PLUGSTREAM_VENDOR",
    "VENDORS",
    "DataTransferStatus",
    "VendorAnswer",
    "VendorHandler",
    "VendorRegistry",
    "VendorRequest",
]

DataTransferStatus = Literal["Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId"]

#: our own vendorId (P02.FR.03: the reversed DNS name of the vendor)
PLUGSTREAM_VENDOR = "org.plugstream"


@dataclass(frozen=True, slots=True)
class VendorRequest:
    """A station's DataTransfer, as a vendor handler sees it."""

    station_id: str
    vendor_id: str
    message_id: str | None
    data: Any  # absent: None
    context: HandlerContext | None = None  # the store, the clock, ... (None in unit tests)


@dataclass(frozen=True, slots=True)
class VendorAnswer:
    status: DataTransferStatus
    data: Any = None  # None: no data in the answer

    def payload(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"status": self.status}
        if self.data is not None:
            answer["data"] = self.data
        return answer


VendorHandler = Callable[[VendorRequest], Awaitable[VendorAnswer]]


@dataclass(slots=True)
class VendorRegistry:
    """vendorId -> messageId (None: none given) -> handler."""

    _vendors: dict[str, dict[str | None, VendorHandler]] = field(default_factory=dict)
    _names: dict[str, str] = field(default_factory=dict)  # casefolded -> as registered

    def message(
        self, vendor_id: str, message_id: str | None = None
    ) -> Callable[[VendorHandler], VendorHandler]:
        """Register the decorated function for ``vendor_id`` / ``message_id``."""
        if not vendor_id or len(vendor_id) > 255:
            raise ValueError("a vendorId is 1 to 255 characters (DataTransferRequest)")
        if message_id is not None and not 0 < len(message_id) <= 50:
            raise ValueError("a messageId is 1 to 50 characters (DataTransferRequest)")

        def register(fn: VendorHandler) -> VendorHandler:
            key = vendor_id.casefold()
            handlers = self._vendors.setdefault(key, {})
            if message_id in handlers:
                raise ValueError(f"{vendor_id} / {message_id} has a handler already")
            self._names.setdefault(key, vendor_id)
            handlers[message_id] = fn
            return fn

        return register

    def resolve(self, vendor_id: str, message_id: str | None) -> VendorHandler | DataTransferStatus:
        """The handler of this DataTransfer, or the status to answer without one."""
        handlers = self._vendors.get(vendor_id.casefold())
        if handlers is None:
            return "UnknownVendorId"  # P02.FR.06
        handler = handlers.get(message_id)
        return handler if handler is not None else "UnknownMessageId"  # P02.FR.07

    async def handle(self, request: VendorRequest) -> VendorAnswer:
        found = self.resolve(request.vendor_id, request.message_id)
        if isinstance(found, str):
            return VendorAnswer(found)
        return await found(request)

    def vendors(self) -> dict[str, list[str | None]]:
        """Each vendorId (as registered) and its messageIds, sorted (None first)."""
        return {
            self._names[key]: sorted(handlers, key=lambda m: (m is not None, m or ""))
            for key, handlers in sorted(self._vendors.items())
        }


#: the cloud's registry: DataTransfer handlers register here when their module is imported
VENDORS = VendorRegistry()


@VENDORS.message(PLUGSTREAM_VENDOR, "ping")
async def ping(request: VendorRequest) -> VendorAnswer:
    """Whether the cloud reads our vendor extension at all: answers "pong"."""
    return VendorAnswer("Accepted", "pong")


@VENDORS.message(PLUGSTREAM_VENDOR, "echo")
async def echo(request: VendorRequest) -> VendorAnswer:
    """The data back as sent: to see what a station's data looks like on arrival."""
    return VendorAnswer("Accepted", request.data)
