"""The console's login on a real cloud on loopback (issue 16): the session cookie and its
attributes, wrong logins (one 401, then 429), the REST API's role rules and CSRF token
for a session, logout, ``plugstream cloud user`` (its sessions ended by passwd and
remove), and the bearer token working as before."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from plugstream.cloud.api.common import SESSION_COOKIE, guarded_router, include_guarded
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.console import auth as console_auth
from plugstream.cloud.storage import Store
from tests.support import WAIT, Cloud, booted16, serving

pytestmark = pytest.mark.socket

TOKEN = "console-test-token-0123456789"
PASSWORD = "correct-horse-battery"


@contextlib.asynccontextmanager
async def console_cloud(tmp_path: Path, **overrides: Any) -> AsyncIterator[Cloud]:
    """What tests.support.running_cloud runs, with the console's login in it."""
    from plugstream.cloud.app import create_app
    from plugstream.cloud.serve import CloudServer, bound_port, uvicorn_config

    config = replace(
        CloudConfig(
            host="127.0.0.1",
            port=0,
            db=f"sqlite:///{tmp_path / 'cloud.db'}",
            api_token=TOKEN,
            call_timeout=5.0,
            auto_register_unsecured=True,
        ),
        **overrides,
    )
    app = create_app(config)
    server = CloudServer(uvicorn_config(config, app))
    async with serving(server):
        yield Cloud(config, bound_port(server, 0), app.state.store, app.state.gateway, server)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with console_cloud(tmp_path, login_failures_per_station=2, login_lock_s=60.0) as c:
        await c.store.operators.add("ada", PASSWORD, "admin")
        await c.store.operators.add("otto", PASSWORD, "operator")
        await c.store.operators.add("rita", PASSWORD, "read-only")
        yield c


@pytest.fixture
async def http(cloud: Cloud) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials (each test says which it sends)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}", timeout=WAIT) as c:
        yield c


async def login(http: httpx.AsyncClient, user: str) -> tuple[dict[str, str], str]:
    """The Cookie header of ``user``'s new session, and its CSRF token."""
    answer = await http.post("/login", data={"username": user, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Cookie": f"{SESSION_COOKIE}={answer.cookies[SESSION_COOKIE]}"}, answer.json()[
        "csrf_token"
    ]


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugstream.cli", "cloud", "user", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- login and its cookie ---------------------------------------------------------------


async def test_login_sets_an_httponly_samesite_strict_cookie(http: httpx.AsyncClient) -> None:
    answer = await http.post("/login", data={"username": "ada", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    assert answer.json()["username"] == "ada" and answer.json()["role"] == "admin"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # plain http here: a Secure cookie would never come back

    headers = {"Cookie": f"{SESSION_COOKIE}={answer.cookies[SESSION_COOKIE]}"}
    me = await http.get("/api/v1/session", headers=headers)
    assert me.status_code == 200
    assert me.json() == answer.json()


async def test_the_cookie_is_secure_under_tls(tmp_path: Path) -> None:
    """The scope's scheme says TLS (as uvicorn sets it behind --tls-cert): Secure."""
    store = await Store.open(f"sqlite:///{tmp_path / 'tls.db'}")
    try:
        await store.operators.add("ada", PASSWORD, "admin")
        app = FastAPI()
        app.state.store, app.state.config = store, CloudConfig(api_token=TOKEN)
        app.include_router(console_auth.router)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://cloud.test") as c:
            answer = await c.post("/login", data={"username": "ada", "password": PASSWORD})
        assert answer.status_code == 200
        attributes = {a.strip().lower() for a in answer.headers["set-cookie"].split(";")[1:]}
        assert {"secure", "httponly", "samesite=strict"} <= attributes
    finally:
        await store.close()


async def test_a_wrong_login_is_one_401_then_throttled(http: httpx.AsyncClient) -> None:
    wrong_password = await http.post("/login", data={"username": "otto", "password": "nope-nope"})
    no_such_user = await http.post("/login", data={"username": "zed", "password": PASSWORD})
    for answer in (wrong_password, no_such_user):
        assert answer.status_code == 401
        assert answer.json() == {"detail": "wrong username or password"}  # no enumeration
        assert "set-cookie" not in answer.headers

    again = await http.post("/login", data={"username": "otto", "password": "nope-again"})
    assert again.status_code == 401
    locked = await http.post("/login", data={"username": "otto", "password": PASSWORD})
    assert locked.status_code == 429  # even the right password, while the name is locked
    assert int(locked.headers["Retry-After"]) >= 1
    assert (await http.post("/login", data={"username": "ada", "password": PASSWORD})).is_success


# -- the REST API with a session --------------------------------------------------------


async def test_a_read_only_user_reads_but_cannot_send_a_command(
    cloud: Cloud, http: httpx.AsyncClient
) -> None:
    headers, csrf = await login(http, "rita")
    assert (await http.get("/api/v1/stations", headers=headers)).status_code == 200
    refused = await http.post(
        "/api/v1/stations/CS-1/commands/Reset",
        headers={**headers, "X-CSRF-Token": csrf},
        json={"type": "Soft"},
    )
    assert refused.status_code == 403
    assert "read-only" in refused.json()["detail"]


async def test_an_operator_sends_a_command_with_its_csrf_token(
    cloud: Cloud, http: httpx.AsyncClient
) -> None:
    headers, csrf = await login(http, "otto")
    async with booted16(cloud.url("CS-1")) as ws:
        forged = await http.post(
            "/api/v1/stations/CS-1/commands/Reset", headers=headers, json={"type": "Soft"}
        )
        assert forged.status_code == 403
        assert forged.json() == {"detail": "missing or wrong CSRF token"}
        wrong = await http.post(
            "/api/v1/stations/CS-1/commands/Reset",
            headers={**headers, "X-CSRF-Token": "not-" + csrf},
            json={"type": "Soft"},
        )
        assert wrong.status_code == 403

        sent = asyncio.create_task(
            http.post(
                "/api/v1/stations/CS-1/commands/Reset",
                headers={**headers, "X-CSRF-Token": csrf},
                json={"type": "Soft"},
            )
        )
        call = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert call[0] == 2 and call[2:] == ["Reset", {"type": "Soft"}]
        await ws.send(orjson.dumps([3, call[1], {"status": "Accepted"}]).decode())
        answer = await sent
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "Accepted"}


async def test_only_an_admin_manages_accounts(tmp_path: Path) -> None:
    """Account routes (the console's, later) are an admin's: a stand-in one shows the rule."""
    store = await Store.open(f"sqlite:///{tmp_path / 'roles.db'}")
    try:
        app = FastAPI()
        app.state.store, app.state.config = store, CloudConfig(api_token=TOKEN)
        accounts = guarded_router()

        @accounts.get("/operators")
        async def operators() -> list[str]:
            return [o.username for o in await store.operators.list()]

        include_guarded(app, accounts)
        app.include_router(console_auth.router)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud.test") as c:
            seen = {}
            for user, role in (("ada", "admin"), ("otto", "operator"), ("rita", "read-only")):
                await store.operators.add(user, PASSWORD, role)
                headers, _ = await login(c, user)
                seen[role] = (await c.get("/api/v1/operators", headers=headers)).status_code
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            seen["bearer"] = (await c.get("/api/v1/operators", headers=bearer)).status_code
        assert seen == {"admin": 200, "operator": 403, "read-only": 403, "bearer": 200}
    finally:
        await store.close()


async def test_an_operator_changes_what_a_reader_may_not(http: httpx.AsyncClient) -> None:
    for user, allowed in (("otto", True), ("rita", False)):
        headers, csrf = await login(http, user)
        put = await http.put(
            f"/api/v1/stations/CS-{user}",
            headers={**headers, "X-CSRF-Token": csrf},
            json={"security_profile": 0},
        )
        assert put.is_success is allowed, put.text


async def test_logout_ends_the_session(http: httpx.AsyncClient) -> None:
    headers, csrf = await login(http, "ada")
    forged = await http.post("/logout", headers=headers)
    assert forged.status_code == 403
    assert (await http.get("/api/v1/stations", headers=headers)).status_code == 200

    out = await http.post("/logout", headers=headers, data={"csrf_token": csrf})  # a form
    assert out.status_code == 204
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    after = await http.get("/api/v1/stations", headers=headers)
    assert after.status_code == 401
    assert (await http.get("/api/v1/session", headers=headers)).status_code == 401


async def test_logout_by_a_plain_form_goes_on_to_the_login_page(http: httpx.AsyncClient) -> None:
    headers, csrf = await login(http, "ada")
    page = {**headers, "Accept": "text/html,application/xhtml+xml"}  # a browser, no script
    out = await http.post("/logout", headers=page, data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    assert (await http.get("/api/v1/session", headers=headers)).status_code == 401


async def test_the_bearer_token_works_as_before(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v1/stations")).status_code == 401
    wrong = await http.get("/api/v1/stations", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong bearer token"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await http.get("/api/v1/stations", headers=bearer)).status_code == 200
    put = await http.put("/api/v1/stations/CS-7", headers=bearer, json={"security_profile": 0})
    assert put.is_success  # no CSRF token needed with the bearer token
    stale = {"Cookie": f"{SESSION_COOKIE}=not-a-session"}
    assert (await http.get("/api/v1/stations", headers=stale)).status_code == 401


# -- plugstream cloud user --------------------------------------------------------------


async def test_cloud_user_passwd_and_remove_end_the_sessions(
    cloud: Cloud, http: httpx.AsyncClient
) -> None:
    db = cloud.config.db
    otto, _ = await login(http, "otto")
    rita, _ = await login(http, "rita")

    done = await asyncio.to_thread(
        cli, "passwd", "otto", "--password-stdin", "--db", db, stdin="a-new-password\n"
    )
    assert done.returncode == 0, done.stderr
    assert (await http.get("/api/v1/stations", headers=otto)).status_code == 401
    assert (await http.get("/api/v1/stations", headers=rita)).status_code == 200
    relogin = await http.post("/login", data={"username": "otto", "password": "a-new-password"})
    assert relogin.status_code == 200

    done = await asyncio.to_thread(cli, "remove", "rita", "--db", db)
    assert done.returncode == 0, done.stderr
    assert (await http.get("/api/v1/stations", headers=rita)).status_code == 401


def test_cloud_user_add_list_remove(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'users.db'}"
    added = cli("add", "ada", "--role", "admin", "--password-stdin", "--db", db, stdin=PASSWORD)
    assert added.returncode == 0, added.stderr
    reader = cli(
        "add", "rita", "--role", "read-only", "--password-stdin", "--db", db, stdin=PASSWORD
    )
    assert reader.returncode == 0, reader.stderr

    listed = cli("list", "--db", db)
    assert listed.returncode == 0, listed.stderr
    assert "ada" in listed.stdout and "admin" in listed.stdout and "read-only" in listed.stdout
    assert "argon2" not in listed.stdout and PASSWORD not in listed.stdout

    again = cli("add", "ada", "--role", "operator", "--password-stdin", "--db", db, stdin=PASSWORD)
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1

    assert cli("remove", "rita", "--db", db).returncode == 0
    assert "rita" not in cli("list", "--db", db).stdout
    for args in (("remove", "rita"), ("passwd", "nobody", "--password-stdin")):
        unknown = cli(*args, "--db", db, stdin=PASSWORD)
        assert unknown.returncode == 1, unknown.stderr
        lines = unknown.stderr.strip().splitlines()
        assert len(lines) == 1 and "no such user" in lines[0]


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("add", "ada", "--role", "root", "--password-stdin"), "root"),
        (("add", "ada", "--password-stdin"), "--role"),
        (("list", "--no-such-flag"), "--no-such-flag"),
        (("add", "ada", "--role", "admin", "--password-stdin"), "password"),  # too short
        (("list", "--db", "mysql://x/y"), "mysql"),
    ],
)
def test_cloud_user_bad_flag_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], mentions: str
) -> None:
    db = ("--db", f"sqlite:///{tmp_path / 'u.db'}") if "--db" not in args else ()
    done = cli(*args, *db, stdin="short\n")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugstream: error: "), done.stderr
    assert mentions in lines[0]
