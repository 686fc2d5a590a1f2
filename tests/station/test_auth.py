"""Local authorization: list, cache and the offline rules (OCPP 1.6 §3.5, 2.0.1 C10-C15, D01-D02).

Tests named after an OCTT test case (TC_C_xx_CS, TC_D_xx_CS) follow its scenario.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from plugstream.station.auth import (
    AuthCache,
    AuthConfig,
    Authorizer,
    LocalAuthList,
    TokenKey,
    Verdict,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TAG = TokenKey.id_tag("TAG1")
RFID = {"idToken": "04A1B2", "type": "ISO14443"}


def ok(**extra: Any) -> dict[str, Any]:
    return {"status": "Accepted", **extra}


def entry16(tag: str, status: str | None = "Accepted", **extra: Any) -> dict[str, Any]:
    if status is None:
        return {"idTag": tag}
    return {"idTag": tag, "idTagInfo": {"status": status, **extra}}


def make(tmp_path: Path | None = None, **flags: Any) -> tuple[Authorizer, LocalAuthList, AuthCache]:
    lst = LocalAuthList(tmp_path / "list.json" if tmp_path else None)
    cache = AuthCache(capacity=10, path=tmp_path / "cache.json" if tmp_path else None)
    return Authorizer(lst, cache, AuthConfig(**flags)), lst, cache


# --------------------------------------------------------------------------- SendLocalList


def test_TC_D_01_CS_full_update_replaces_list() -> None:
    lst = LocalAuthList()
    assert lst.send_local_list(1, "Full", [entry16("A"), entry16("B")]) == "Accepted"
    assert lst.send_local_list(2, "Full", [entry16("C", "Blocked")]) == "Accepted"
    assert lst.get_version() == 2
    assert lst.keys() == [TokenKey.id_tag("C")]
    assert lst.get(TokenKey.id_tag("C")) == {"status": "Blocked"}


def test_full_update_accepts_any_version_even_lower() -> None:
    lst = LocalAuthList()
    lst.send_local_list(5, "Full", [entry16("A")])
    assert lst.send_local_list(3, "Full", [entry16("B")]) == "Accepted"
    assert lst.get_version() == 3


def test_full_update_entry_without_info_fails_and_keeps_list() -> None:
    lst = LocalAuthList()
    lst.send_local_list(1, "Full", [entry16("A")])
    assert lst.send_local_list(2, "Full", [entry16("B"), entry16("C", None)]) == "Failed"
    assert lst.get_version() == 1
    assert lst.keys() == [TokenKey.id_tag("A")]


def test_TC_D_02_CS_differential_update_adds_and_updates() -> None:
    lst = LocalAuthList()
    lst.send_local_list(1, "Full", [entry16("A"), entry16("B")])
    status = lst.send_local_list(2, "Differential", [entry16("B", "Blocked"), entry16("C")])
    assert status == "Accepted"
    assert lst.get_version() == 2
    assert len(lst) == 3
    assert lst.get(TokenKey.id_tag("B")) == {"status": "Blocked"}
    assert lst.get(TokenKey.id_tag("A")) == {"status": "Accepted"}


def test_TC_D_03_CS_differential_remove_entries_without_info() -> None:
    lst = LocalAuthList()
    lst.send_local_list(1, "Full", [entry16("A"), entry16("B")])
    status = lst.send_local_list(2, "Differential", [entry16("A", None), entry16("ZZ", None)])
    assert status == "Accepted"
    assert lst.keys() == [TokenKey.id_tag("B")]


def test_TC_D_04_CS_full_with_empty_list_empties_but_keeps_version() -> None:
    lst = LocalAuthList()
    lst.send_local_list(1, "Full", [entry16("A")])
    assert lst.send_local_list(7, "Full", None) == "Accepted"
    assert len(lst) == 0
    assert lst.get_version() == 7  # D02 remark: an emptied list has a version > 0


def test_TC_D_05_CS_differential_with_empty_list_only_bumps_version() -> None:
    lst = LocalAuthList()
    lst.send_local_list(1, "Full", [entry16("A")])
    assert lst.send_local_list(2, "Differential", []) == "Accepted"
    assert lst.keys() == [TokenKey.id_tag("A")]
    assert lst.get_version() == 2


@pytest.mark.parametrize("version", [3, 2])
def test_TC_D_06_CS_differential_version_not_higher_is_version_mismatch(version: int) -> None:
    lst = LocalAuthList()
    lst.send_local_list(3, "Full", [entry16("A")])
    assert lst.send_local_list(version, "Differential", [entry16("B")]) == "VersionMismatch"
    assert lst.get_version() == 3
    assert TokenKey.id_tag("B") not in lst


@pytest.mark.parametrize("version", [0, -1])
def test_reserved_versions_fail(version: int) -> None:
    lst = LocalAuthList()
    assert lst.send_local_list(version, "Full", [entry16("A")]) == "Failed"
    assert lst.get_version() == 0


def test_max_length_exceeded_fails_and_keeps_list() -> None:
    lst = LocalAuthList()
    assert lst.send_local_list(1, "Full", [entry16("A"), entry16("B")], max_length=2) == "Accepted"
    # the resulting list would hold 3 > LocalAuthListMaxLength
    assert lst.send_local_list(2, "Differential", [entry16("C")], max_length=2) == "Failed"
    assert lst.send_local_list(2, "Full", [entry16(x) for x in "CDE"], max_length=2) == "Failed"
    assert lst.get_version() == 1
    assert len(lst) == 2
    # replacing and deleting within the limit is fine
    diff = [entry16("A", None), entry16("C")]
    assert lst.send_local_list(2, "Differential", diff, max_length=2) == "Accepted"


def test_send_local_list_max_length_per_message_fails() -> None:
    lst = LocalAuthList()
    entries = [entry16(x) for x in "ABC"]
    assert lst.send_local_list(1, "Full", entries, max_per_message=2) == "Failed"
    assert lst.get_version() == 0


def test_duplicate_ids_fail_case_insensitively() -> None:
    lst = LocalAuthList()
    assert lst.send_local_list(1, "Full", [entry16("abc"), entry16("ABC")]) == "Failed"


def test_TC_D_07_CS_local_list_persistent_over_reboot(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    lst = LocalAuthList(path)
    lst.send_local_list(4, "Full", [entry16("A", expiryDate="2030-01-01T00:00:00Z")])
    lst.send_local_list(5, "Differential", [{"idToken": RFID, "idTokenInfo": ok()}])
    again = LocalAuthList.load(path)
    assert again.get_version() == 5
    assert again.get(TokenKey.id_tag("a")) == {
        "status": "Accepted",
        "expiryDate": "2030-01-01T00:00:00Z",
    }
    assert again.get(TokenKey.from_id_token(RFID)) == ok()
    assert LocalAuthList.load(tmp_path / "missing.json").get_version() == 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_failed_update_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    lst = LocalAuthList(path)
    lst.send_local_list(1, "Full", [entry16("A")])
    before = path.read_text()
    lst.send_local_list(1, "Differential", [entry16("B")])
    assert path.read_text() == before


def test_TC_D_08_CS_and_TC_D_10_CS_get_local_list_version() -> None:
    auth, lst, _ = make()
    assert auth.get_local_list_version() == 0  # D02.FR.02: nothing received yet
    lst.send_local_list(9, "Full", [])
    assert auth.get_local_list_version() == 9
    disabled = Authorizer(lst, AuthCache(), AuthConfig(local_list_enabled=False))
    assert disabled.get_local_list_version() == 0  # D02.FR.03


# --------------------------------------------------------------------------- 2.0.1 idToken keys


def test_201_id_token_keys_distinct_from_16_id_tag() -> None:
    lst = LocalAuthList()
    lst.send_local_list(
        1,
        "Full",
        [
            {"idToken": RFID, "idTokenInfo": ok()},
            {
                "idToken": {"idToken": "04A1B2", "type": "Central"},
                "idTokenInfo": {"status": "Blocked"},
            },
        ],
    )
    assert lst.get(TokenKey.from_id_token(RFID)) == ok()
    assert lst.get(TokenKey("04a1b2", "ISO14443")) == ok()  # idToken is case-insensitive
    assert lst.get(TokenKey("04A1B2", "Central")) == {"status": "Blocked"}
    assert lst.get(TokenKey.id_tag("04A1B2")) is None
    assert lst.get(TokenKey("04A1B2", "eMAID")) is None


def test_201_differential_remove_by_id_token_and_type() -> None:
    lst = LocalAuthList()
    other = {"idToken": "04A1B2", "type": "Central"}
    lst.send_local_list(
        1, "Full", [{"idToken": RFID, "idTokenInfo": ok()}, {"idToken": other, "idTokenInfo": ok()}]
    )
    assert lst.send_local_list(2, "Differential", [{"idToken": RFID}]) == "Accepted"
    assert lst.keys() == [TokenKey.from_id_token(other)]


# --------------------------------------------------------------------------- cache


def test_TC_C_33_CS_cache_updated_on_authorize_response() -> None:
    auth, _, cache = make()
    key = TokenKey.from_id_token(RFID)
    auth.on_csms_info(key, ok(), now=T0)
    auth.on_csms_info(key, {"status": "Blocked"}, now=T0)
    assert cache.lookup(key, now=T0) == {"status": "Blocked"}  # C10.FR.01: not-valid kept


def test_ids_on_local_list_are_not_cached_and_conflicts_reported() -> None:
    auth, lst, cache = make()
    lst.send_local_list(1, "Full", [entry16("TAG1")])
    assert auth.on_csms_info(TAG, {"status": "Blocked"}, now=T0) is True  # LocalListConflict
    assert auth.on_csms_info(TAG, ok(), now=T0) is False
    assert TAG not in cache


def test_cache_disabled_stores_nothing() -> None:
    auth, _, cache = make(cache_enabled=False)
    auth.on_csms_info(TAG, ok(), now=T0)
    assert len(cache) == 0


def test_cache_expiry_date_turns_entry_expired() -> None:
    cache = AuthCache()
    cache.update(TAG, ok(expiryDate="2025-01-01T13:00:00Z"), now=T0)
    assert cache.lookup(TAG, now=T0)["status"] == "Accepted"  # type: ignore[index]
    later = cache.lookup(TAG, now=T0 + timedelta(hours=2))
    assert later is not None and later["status"] == "Expired"


def test_201_cache_expiry_date_time_turns_entry_expired() -> None:
    cache = AuthCache()
    key = TokenKey.from_id_token(RFID)
    cache.update(key, ok(cacheExpiryDateTime="2025-01-01T12:30:00+00:00"), now=T0)
    info = cache.lookup(key, now=T0 + timedelta(hours=1))
    assert info is not None and info["status"] == "Expired"


def test_TC_C_46_CS_cache_lifetime_removes_unused_entry() -> None:
    cache = AuthCache(lifetime=600)
    cache.update(TAG, ok(), now=T0)
    # used within the lifetime: the clock restarts
    assert cache.lookup(TAG, now=T0 + timedelta(seconds=500)) is not None
    assert cache.lookup(TAG, now=T0 + timedelta(seconds=1000)) is not None
    assert cache.lookup(TAG, now=T0 + timedelta(seconds=1700)) is None
    assert TAG not in cache


def test_cache_full_evicts_not_valid_first_then_least_recently_used() -> None:
    cache = AuthCache(capacity=3)
    a, b, c, d, e = (TokenKey.id_tag(x) for x in "ABCDE")
    cache.update(a, ok(), now=T0)
    cache.update(b, {"status": "Blocked"}, now=T0)
    cache.update(c, ok(), now=T0)
    cache.update(d, ok(), now=T0)  # evicts B, the NOT-valid one, though A is older
    assert b not in cache and a in cache
    cache.lookup(a, now=T0)  # A becomes the most recently used
    cache.update(e, ok(), now=T0)  # all valid: evicts the least recently used, C
    assert c not in cache
    assert {a, d, e} == {k for k in (a, b, c, d, e) if k in cache}


def test_TC_C_37_CS_clear_cache_accepted() -> None:
    auth, _, cache = make()
    auth.on_csms_info(TAG, ok(), now=T0)
    assert auth.clear_cache() == "Accepted"
    assert len(cache) == 0
    assert auth.authorize(TAG, online=False, now=T0).verdict is Verdict.REJECT


def test_TC_C_38_CS_clear_cache_rejected_when_disabled() -> None:
    auth, _, _ = make(cache_enabled=False)
    assert auth.clear_cache() == "Rejected"


def test_TC_C_32_CS_cache_persistent_over_reboot(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = AuthCache(path=path, lifetime=3600)
    cache.update(TAG, ok(parentIdTag="P"), now=T0)
    cache.update(TokenKey.from_id_token(RFID), {"status": "Invalid"}, now=T0)
    again = AuthCache.load(path, lifetime=3600)
    assert again.lookup(TAG, now=T0) == ok(parentIdTag="P")
    assert again.lookup(TokenKey.from_id_token(RFID), now=T0) == {"status": "Invalid"}
    assert json.loads(path.read_text())["format"] == 1
    again.clear()
    assert len(AuthCache.load(path)) == 0


# --------------------------------------------------------------------------- online decisions


def test_TC_C_08_CS_online_cached_accepted_with_local_pre_authorize() -> None:
    auth, _, _ = make(local_pre_authorize=True)
    auth.on_csms_info(TAG, ok(), now=T0)
    d = auth.authorize(TAG, online=True, now=T0)
    assert d.accept_locally and d.source == "cache" and d.info == ok()


def test_TC_C_36_CS_online_cached_accepted_without_local_pre_authorize_asks() -> None:
    auth, _, _ = make(local_pre_authorize=False)
    auth.on_csms_info(TAG, ok(), now=T0)
    assert auth.authorize(TAG, online=True, now=T0).ask_csms


@pytest.mark.parametrize(
    "status",
    [
        pytest.param("Invalid", id="TC_C_09_CS"),
        pytest.param("Blocked", id="TC_C_10_CS"),
        pytest.param("Expired", id="TC_C_11_CS"),
    ],
)
def test_online_cached_not_accepted_asks_csms(status: str) -> None:
    auth, _, _ = make(local_pre_authorize=True)
    auth.on_csms_info(TAG, {"status": status}, now=T0)
    d = auth.authorize(TAG, online=True, now=T0)
    assert d.ask_csms and d.info == {"status": status}


def test_TC_C_57_CS_cache_disable_post_authorize_rejects_not_accepted() -> None:
    auth, _, _ = make(local_pre_authorize=True, cache_disable_post_authorize=True)
    auth.on_csms_info(TAG, {"status": "Invalid"}, now=T0)
    assert auth.authorize(TAG, online=True, now=T0).reject


def test_TC_C_27_CS_online_local_list_accepted() -> None:
    auth, lst, _ = make(local_pre_authorize=True)
    lst.send_local_list(1, "Full", [entry16("TAG1")])
    d = auth.authorize(TAG, online=True, now=T0)
    assert d.accept_locally and d.source == "local_list"


@pytest.mark.parametrize(
    "status",
    [
        pytest.param("Invalid", id="TC_C_28_CS"),
        pytest.param("Blocked", id="TC_C_29_CS"),
        pytest.param("Expired", id="TC_C_30_CS"),
    ],
)
def test_online_local_list_not_accepted_asks_csms(status: str) -> None:
    auth, lst, _ = make(local_pre_authorize=True)
    lst.send_local_list(1, "Full", [entry16("TAG1", status)])
    assert auth.authorize(TAG, online=True, now=T0).ask_csms  # C14.FR.03


def test_online_local_list_disable_post_authorize_rejects() -> None:
    auth, lst, _ = make(local_pre_authorize=True, local_list_disable_post_authorize=True)
    lst.send_local_list(1, "Full", [entry16("TAG1", "Blocked")])
    assert auth.authorize(TAG, online=True, now=T0).reject


def test_online_unknown_asks_csms() -> None:
    auth, _, _ = make(local_pre_authorize=True, allow_offline_tx_for_unknown_id=True)
    d = auth.authorize(TAG, online=True, now=T0)
    assert d.ask_csms and d.info is None


def test_online_local_list_accepted_but_past_expiry_asks() -> None:
    auth, lst, _ = make(local_pre_authorize=True)
    lst.send_local_list(1, "Full", [entry16("TAG1", expiryDate="2024-12-31T00:00:00Z")])
    d = auth.authorize(TAG, online=True, now=T0)
    assert d.ask_csms and d.info is not None and d.info["status"] == "Expired"


def test_local_list_has_priority_over_cache() -> None:
    auth, lst, cache = make(local_pre_authorize=True)
    cache.update(TAG, ok(), now=T0)  # cached before the list knew it
    lst.send_local_list(1, "Full", [entry16("TAG1", "Blocked")])
    assert auth.authorize(TAG, online=False, now=T0).reject
    assert auth.authorize(TAG, online=True, now=T0).source == "local_list"


def test_disabled_local_list_is_not_consulted() -> None:
    auth, lst, _ = make(local_list_enabled=False)
    lst.send_local_list(1, "Full", [entry16("TAG1")])
    assert auth.authorize(TAG, online=False, now=T0).reject


# --------------------------------------------------------------------------- offline rules


def test_TC_C_21_CS_offline_local_list_accepted() -> None:
    auth, lst, _ = make(local_authorize_offline=True)
    lst.send_local_list(1, "Full", [entry16("TAG1")])
    d = auth.authorize(TAG, online=False, now=T0)
    assert d.accept_locally and d.source == "local_list" and d.info == ok()


@pytest.mark.parametrize(
    "status",
    [
        pytest.param("Invalid", id="TC_C_22_CS"),
        pytest.param("Blocked", id="TC_C_23_CS"),
        pytest.param("Expired", id="TC_C_24_CS"),
    ],
)
@pytest.mark.parametrize("unknown_ok", [False, True])
def test_offline_local_list_not_accepted_rejects_even_with_unknown_allowed(
    status: str, unknown_ok: bool
) -> None:
    auth, lst, _ = make(allow_offline_tx_for_unknown_id=unknown_ok)
    lst.send_local_list(1, "Full", [entry16("TAG1", status)])
    d = auth.authorize(TAG, online=False, now=T0)
    assert d.reject and d.info == {"status": status}


def test_offline_valid_entry_expired_by_time_rejects() -> None:
    auth, lst, _ = make(allow_offline_tx_for_unknown_id=True)
    lst.send_local_list(1, "Full", [entry16("TAG1", expiryDate="2025-01-01T11:59:00Z")])
    assert auth.authorize(TAG, online=False, now=T0).reject


def test_TC_C_25_CS_offline_local_list_over_cache() -> None:
    auth, lst, cache = make()
    cache.update(TAG, {"status": "Invalid"}, now=T0)
    lst.send_local_list(1, "Full", [entry16("TAG1")])
    d = auth.authorize(TAG, online=False, now=T0)
    assert d.accept_locally and d.source == "local_list"


def test_offline_cache_accepted_and_not_accepted() -> None:
    auth, _, _ = make(allow_offline_tx_for_unknown_id=True)
    blocked = TokenKey.id_tag("B")
    auth.on_csms_info(TAG, ok(), now=T0)
    auth.on_csms_info(blocked, {"status": "Blocked"}, now=T0)
    assert auth.authorize(TAG, online=False, now=T0).source == "cache"
    assert auth.authorize(TAG, online=False, now=T0).accept_locally
    assert auth.authorize(blocked, online=False, now=T0).reject  # known, so not "unknown"


# (LocalAuthorizeOffline, AllowOfflineTxForUnknownId) x (where the token is) -> verdict
OFFLINE_TABLE = [
    (True, False, "list", Verdict.ACCEPT_LOCALLY),
    (True, False, "cache", Verdict.ACCEPT_LOCALLY),
    (True, False, "unknown", Verdict.REJECT),
    (True, True, "unknown", Verdict.ACCEPT_LOCALLY),
    (False, False, "list", Verdict.REJECT),
    (False, False, "cache", Verdict.REJECT),
    (False, False, "unknown", Verdict.REJECT),
    (False, True, "list", Verdict.ACCEPT_LOCALLY),
    (False, True, "cache", Verdict.ACCEPT_LOCALLY),
    (False, True, "unknown", Verdict.ACCEPT_LOCALLY),
]


@pytest.mark.parametrize(("local_offline", "unknown_ok", "where", "verdict"), OFFLINE_TABLE)
def test_offline_rule_combinations(
    local_offline: bool, unknown_ok: bool, where: str, verdict: Verdict
) -> None:
    auth, lst, cache = make(
        local_authorize_offline=local_offline, allow_offline_tx_for_unknown_id=unknown_ok
    )
    if where == "list":
        lst.send_local_list(1, "Full", [entry16("TAG1")])
    elif where == "cache":
        cache.update(TAG, ok(), now=T0)
    assert auth.authorize(TAG, online=False, now=T0).verdict is verdict


def test_TC_C_26_CS_offline_unknown_id_accepted_without_info() -> None:
    auth, _, _ = make(allow_offline_tx_for_unknown_id=True)
    d = auth.authorize(TokenKey.from_id_token(RFID), online=False, now=T0)
    assert d.accept_locally and d.info is None and d.source == "unknown"


def test_offline_cache_lifetime_expired_entry_becomes_unknown() -> None:
    lst = LocalAuthList()
    cache = AuthCache(lifetime=60)
    auth = Authorizer(lst, cache, AuthConfig(allow_offline_tx_for_unknown_id=False))
    auth.on_csms_info(TAG, ok(), now=T0)
    assert auth.authorize(TAG, online=False, now=T0 + timedelta(seconds=30)).accept_locally
    assert auth.authorize(TAG, online=False, now=T0 + timedelta(seconds=200)).reject


def test_201_offline_id_token_type_matters() -> None:
    auth, lst, _ = make()
    lst.send_local_list(1, "Full", [{"idToken": RFID, "idTokenInfo": ok()}])
    assert auth.authorize(TokenKey("04a1b2", "ISO14443"), online=False, now=T0).accept_locally
    assert auth.authorize(TokenKey("04A1B2", "Central"), online=False, now=T0).reject
    assert auth.authorize(TokenKey.id_tag("04A1B2"), online=False, now=T0).reject
