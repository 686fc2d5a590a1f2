"""Display messages on a 2.0.1 station (O01-O06): what the CSMS asks the station to show
its drivers, kept in memory (a reboot clears the screen), and reported on request.

:class:`DisplayBoard` is sans-I/O: it takes SetDisplayMessage / GetDisplayMessages /
ClearDisplayMessage and the station's time, and returns answers and the
NotifyDisplayMessages parts to send. :class:`DisplayHandlers201` is the thin shell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from plugstream.ocpp import after, on, v201
from plugstream.ocpp.datetimes import parse_time

__all__ = ["DisplayBoard", "DisplayHandlers201"]

#: messageInfo entries per NotifyDisplayMessages (the rest follow, tbc true before)
PART_SIZE = 10
_PRIORITY_ORDER = {"AlwaysFront": 0, "InFront": 1, "NormalCycle": 2}


def _time(info: v201.MessageInfoType, key: str) -> datetime | None:
    text = info.get(key)
    if not isinstance(text, str):
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


@dataclass(slots=True)
class DisplayBoard:
    """The messages a station holds, by id."""

    messages: dict[int, v201.MessageInfoType] = field(default_factory=dict)

    def set(
        self, info: v201.MessageInfoType, *, transaction_id: str | None
    ) -> v201.DisplayMessageStatusEnumType:
        """SetDisplayMessage: a message with a known id is replaced (O06.FR.01)."""
        wanted = info.get("transactionId")
        if wanted is not None and wanted != transaction_id:
            return "UnknownTransaction"  # O02.FR.01: only for the ongoing transaction
        if info["message"]["format"] not in ("ASCII", "UTF8", "URI", "HTML"):
            return "NotSupportedMessageFormat"  # O02.FR.05
        if info["priority"] == "AlwaysFront":  # O02.FR.18: one AlwaysFront at a time
            for message_id, old in list(self.messages.items()):
                if old["priority"] == "AlwaysFront":
                    del self.messages[message_id]
        self.messages[info["id"]] = info  # O06.FR.01: an id set again is replaced
        return "Accepted"

    def clear(self, message_id: int) -> v201.ClearMessageStatusEnumType:
        return "Accepted" if self.messages.pop(message_id, None) is not None else "Unknown"

    def expire(self, now: datetime, transaction_id: str | None) -> None:
        """Forget the messages whose endDateTime has passed (O01.FR.07) and those of a
        transaction that is no longer the running one: it has ended (O02.FR.02)."""
        for message_id, info in list(self.messages.items()):
            end = _time(info, "endDateTime")
            tx = info.get("transactionId")
            if (end is not None and end <= now) or (tx is not None and tx != transaction_id):
                del self.messages[message_id]

    def select(self, request: v201.GetDisplayMessagesRequest) -> list[v201.MessageInfoType]:
        """The messages a GetDisplayMessages names (all criteria given must match)."""
        ids: Sequence[int] | None = request.get("id")
        priority = request.get("priority")
        state = request.get("state")
        return [
            info
            for message_id, info in sorted(self.messages.items())
            if (ids is None or message_id in ids)
            and (priority is None or info["priority"] == priority)
            and (state is None or info.get("state") == state)
        ]

    def shown(self, now: datetime, state: str | None = None) -> v201.MessageInfoType | None:
        """The message the screen shows now: highest priority first, then lowest id."""
        live = [
            info
            for info in self.messages.values()
            if (start := _time(info, "startDateTime")) is None or start <= now
            if (end := _time(info, "endDateTime")) is None or now < end
            if info.get("state") in (None, state)
        ]
        live.sort(key=lambda i: (_PRIORITY_ORDER.get(i["priority"], 3), i["id"]))
        return live[0] if live else None


def notify_parts(
    request_id: int, messages: list[v201.MessageInfoType], size: int = PART_SIZE
) -> list[v201.NotifyDisplayMessagesRequest]:
    """The NotifyDisplayMessages that report ``messages``: ``tbc`` on all but the last
    (O03.FR.03-05), each with the requestId asked with."""
    chunks = [messages[i : i + size] for i in range(0, len(messages), size)] or [[]]
    parts: list[v201.NotifyDisplayMessagesRequest] = []
    for n, chunk in enumerate(chunks):
        part: v201.NotifyDisplayMessagesRequest = {"requestId": request_id}
        if chunk:
            part["messageInfo"] = chunk
        if n < len(chunks) - 1:
            part["tbc"] = True
        parts.append(part)
    return parts


class DisplayHandlers201:
    """SetDisplayMessage, GetDisplayMessages (with its NotifyDisplayMessages) and
    ClearDisplayMessage (O01-O05), on the station's ``display`` board."""

    station: Any  # the Station201: display, transaction, now(), call_quietly

    def _board(self) -> DisplayBoard:
        board: DisplayBoard = self.station.display
        tx = self.station.transaction
        board.expire(self.station.now(), None if tx is None else tx.transaction_id)
        return board

    @on(v201.Action.SetDisplayMessage)
    def set_display_message(
        self, payload: v201.SetDisplayMessageRequest
    ) -> v201.SetDisplayMessageResponse:
        tx = self.station.transaction
        status = self._board().set(
            payload["message"], transaction_id=None if tx is None else tx.transaction_id
        )
        return {"status": status}

    @on(v201.Action.GetDisplayMessages)
    def get_display_messages(
        self, payload: v201.GetDisplayMessagesRequest
    ) -> v201.GetDisplayMessagesResponse:
        found = self._board().select(payload)
        return {"status": "Accepted" if found else "Unknown"}  # O03.FR.06, O04.FR.02

    @after(v201.Action.GetDisplayMessages)
    async def get_display_messages_done(self, payload: v201.GetDisplayMessagesRequest) -> None:
        found = self._board().select(payload)
        if not found:
            return  # Unknown: nothing is sent
        send: Callable[[str, dict[str, Any]], Any] = self.station.call_quietly
        for part in notify_parts(payload["requestId"], found):
            await send("NotifyDisplayMessages", dict(part))

    @on(v201.Action.ClearDisplayMessage)
    def clear_display_message(
        self, payload: v201.ClearDisplayMessageRequest
    ) -> v201.ClearDisplayMessageResponse:
        return {"status": self._board().clear(payload["id"])}
