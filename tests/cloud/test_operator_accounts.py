"""Operators' accounts and sessions in the store (issue 16), on SQLite and PostgreSQL:
passwords kept only as argon2 hashes, sessions kept only as the SHA-256 of their id,
sliding expiry, and a password change or a removal ending the account's sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from plugstream.cloud.storage import Store
from plugstream.cloud.storage import schema as s
from plugstream.cloud.storage.operators import (
    SESSION_IDLE_S,
    OperatorExists,
    UnknownOperator,
    session_digest,
)

pytestmark = pytest.mark.unit

PASSWORD = "correct-horse-battery"


async def test_accounts_are_added_listed_verified_and_removed(store: Store) -> None:
    ops = store.operators
    added = await ops.add("alice", PASSWORD, "admin")
    await ops.add("bob", PASSWORD, "read-only")
    assert added.username == "alice" and added.role == "admin"
    assert [(o.username, o.role) for o in await ops.list()] == [
        ("alice", "admin"),
        ("bob", "read-only"),
    ]
    with pytest.raises(OperatorExists):
        await ops.add("alice", "another-password", "operator")
    with pytest.raises(ValueError, match="role"):
        await ops.add("carol", PASSWORD, "root")

    ok = await ops.verify("alice", PASSWORD)
    assert ok is not None and ok.role == "admin"
    assert await ops.verify("alice", "wrong-password") is None
    assert await ops.verify("nobody", PASSWORD) is None  # same answer as a wrong password

    stored = await store.db.read(
        lambda conn: conn.execute(select(s.operators.c.password_hash)).scalars().all()
    )
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in stored)
    assert "argon2" not in repr(await ops.list())

    await ops.remove("bob")
    assert [o.username for o in await ops.list()] == ["alice"]
    with pytest.raises(UnknownOperator):
        await ops.remove("bob")
    with pytest.raises(UnknownOperator):
        await ops.set_password("bob", PASSWORD)


async def test_a_session_is_kept_hashed_and_ends_with_logout(store: Store) -> None:
    ops = store.operators
    operator = await ops.add("alice", PASSWORD, "operator")
    session_id, created = await ops.create_session(operator)
    assert len(session_id) >= 43  # 256 bits, url-safe base64
    kept = await store.db.read(
        lambda conn: conn.execute(select(s.operator_sessions.c.session_hash)).scalars().all()
    )
    assert kept == [session_digest(session_id)] and session_id not in kept

    found = await ops.get_session(session_id)
    assert found is not None
    assert (found.username, found.role, found.csrf_token) == (
        "alice",
        "operator",
        created.csrf_token,
    )
    assert await ops.get_session(session_id + "x") is None

    await ops.delete_session(session_id)
    assert await ops.get_session(session_id) is None


async def test_sessions_slide_and_expire(store: Store) -> None:
    now = [datetime(2026, 12, 5, 8, 0, tzinfo=UTC)]
    store.operators._now = lambda: now[0]  # type: ignore[method-assign]  # the test's clock
    operator = await store.operators.add("alice", PASSWORD, "admin")
    session_id, created = await store.operators.create_session(operator)

    now[0] += timedelta(seconds=SESSION_IDLE_S - 60)  # used just before it would expire
    used = await store.operators.get_session(session_id)
    assert used is not None and used.expires_at > created.expires_at  # moved on

    now[0] += timedelta(seconds=SESSION_IDLE_S + 1)  # then left alone too long
    assert await store.operators.get_session(session_id) is None
    assert await store.db.count_rows("operator_sessions") == 0


async def test_a_new_password_or_a_removal_ends_every_session(store: Store) -> None:
    ops = store.operators
    alice = await ops.add("alice", PASSWORD, "admin")
    bob = await ops.add("bob", PASSWORD, "operator")
    first, _ = await ops.create_session(alice)
    second, _ = await ops.create_session(alice)
    bobs, _ = await ops.create_session(bob)

    await ops.set_password("alice", "a-new-password")
    assert await ops.get_session(first) is None and await ops.get_session(second) is None
    assert await ops.get_session(bobs) is not None
    assert await ops.verify("alice", PASSWORD) is None
    assert await ops.verify("alice", "a-new-password") is not None

    await ops.remove("bob")
    assert await ops.get_session(bobs) is None
    again, _ = await ops.create_session(alice)
    assert await ops.delete_sessions("alice") == 1
    assert await ops.get_session(again) is None
