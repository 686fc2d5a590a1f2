"""The storage of reservations and display messages (issue 15, blocks H and O): what the
REST API and the handlers read back is what was written, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from plugstream.cloud.storage import Store
from plugstream.cloud.storage.reservations import shown_status

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


async def reserve(store: Store, station_id: str = "CS1", expiry: datetime = T0) -> int:
    record = await store.reservations.create(
        station_id,
        evse_id=1,
        id_token="TOKEN1",
        id_token_type="ISO14443",
        group_id_token="GROUP1",
        expiry=expiry + timedelta(hours=1),
        at=expiry,
    )
    return record.reservation_id


async def test_a_reservation_gets_a_new_id_and_is_pending_until_answered(store: Store) -> None:
    first = await reserve(store)
    second = await reserve(store, "CS2")
    assert second > first >= 1
    record = await store.reservations.get(first)
    assert record is not None
    assert (record.status, record.station_id, record.evse_id) == ("Pending", "CS1", 1)
    assert (record.id_token, record.group_id_token) == ("TOKEN1", "GROUP1")
    assert record.expiry == T0 + timedelta(hours=1)
    assert record.expiry.tzinfo is not None


async def test_an_answer_does_not_undo_a_later_update(store: Store) -> None:
    rid = await reserve(store)
    await store.reservations.set_status(rid, "Removed", T0, station_id="CS1")
    late = await store.reservations.set_status(rid, "Accepted", T0, if_status="Pending")
    assert late is None
    record = await store.reservations.get(rid)
    assert record is not None and record.status == "Removed"


async def test_a_station_updates_only_its_own_reservations(store: Store) -> None:
    rid = await reserve(store, "CS1")
    assert await store.reservations.set_status(rid, "Expired", T0, station_id="OTHER") is None
    used = await store.reservations.set_status(
        rid, "Used", T0, station_id="CS1", transaction_id="TX-1"
    )
    assert used is not None and (used.status, used.transaction_id) == ("Used", "TX-1")


async def test_reservations_are_listed_newest_first_per_station_and_by_page(store: Store) -> None:
    ids = [await reserve(store, sid) for sid in ("A", "B", "A", "A")]
    listed = await store.reservations.list_reservations(station_id="A", limit=2)
    assert [r.reservation_id for r in listed] == [ids[3], ids[2]]
    rest = await store.reservations.list_reservations(station_id="A", before=ids[2])
    assert [r.reservation_id for r in rest] == [ids[0]]


def test_an_accepted_reservation_past_its_expiry_shows_expired() -> None:
    assert shown_status("Accepted", T0, T0 - timedelta(seconds=1)) == "Accepted"
    assert shown_status("Accepted", T0, T0) == "Expired"
    assert shown_status("Used", T0, T0 + timedelta(days=1)) == "Used"
    assert shown_status("Cancelled", T0, T0 + timedelta(days=1)) == "Cancelled"


def message(message_id: int, priority: str = "NormalCycle", **extra: object) -> dict[str, object]:
    return {
        "id": message_id,
        "priority": priority,
        "message": {"format": "UTF8", "content": f"message {message_id}"},
        **extra,
    }


async def test_a_display_message_is_kept_pending_then_with_its_answer(store: Store) -> None:
    await store.display_messages.set_pending("CS1", message(7, state="Charging"), T0)
    [pending] = await store.display_messages.list_messages("CS1")
    assert (pending.message_id, pending.status, pending.state) == (7, "Pending", "Charging")
    answered = await store.display_messages.set_status("CS1", 7, "Accepted", T0)
    assert answered is not None and answered.status == "Accepted"
    assert answered.info["message"]["content"] == "message 7"
    assert await store.display_messages.remove("CS1", 7)
    assert await store.display_messages.list_messages("CS1") == []


async def test_notify_display_messages_parts_are_assembled_into_one_report(store: Store) -> None:
    await store.display_messages.set_pending("CS1", message(1), T0)
    await store.display_messages.set_status("CS1", 1, "Accepted", T0)
    await store.display_messages.set_pending("CS1", message(9), T0)
    await store.display_messages.set_status("CS1", 9, "Accepted", T0)  # gone from the station
    request = await store.display_messages.new_request("CS1", {}, T0)
    await store.display_messages.request_answered(request.request_id, "Accepted", T0)
    part = await store.display_messages.report(
        "CS1", request.request_id, [message(1), message(2)], tbc=True, at=T0
    )
    assert part is not None and (part.status, part.parts) == ("Accepted", 1)
    last = await store.display_messages.report(
        "CS1", request.request_id, [message(3, "AlwaysFront")], tbc=False, at=T0
    )
    assert last is not None and (last.status, last.parts) == ("Complete", 2)
    shown = await store.display_messages.reported("CS1", request.request_id)
    assert [(m.message_id, m.status) for m in shown] == [
        (1, "Accepted"),
        (2, "Reported"),
        (3, "Reported"),
    ]
    # a report of all: message 9, which the station no longer has, is gone
    assert [m.message_id for m in await store.display_messages.list_messages("CS1")] == [1, 2, 3]
    # an answer read after the last part does not undo Complete
    await store.display_messages.request_answered(request.request_id, "Accepted", T0)
    again = await store.display_messages.get_request(request.request_id)
    assert again is not None and again.status == "Complete"


async def test_a_filtered_report_forgets_nothing_and_a_strange_one_is_kept(store: Store) -> None:
    await store.display_messages.set_pending("CS1", message(1), T0)
    await store.display_messages.set_status("CS1", 1, "Accepted", T0)
    request = await store.display_messages.new_request("CS1", {"priority": "InFront"}, T0)
    await store.display_messages.report(
        "CS1", request.request_id, [message(4, "InFront")], tbc=False, at=T0
    )
    assert [m.message_id for m in await store.display_messages.list_messages("CS1")] == [1, 4]
    # a requestId the cloud never sent (or another station's): the messages are kept
    assert (
        await store.display_messages.report(
            "CS2", request.request_id, [message(5)], tbc=False, at=T0
        )
        is None
    )
    assert [m.message_id for m in await store.display_messages.list_messages("CS2")] == [5]
