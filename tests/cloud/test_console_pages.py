"""The console's pages as HTTP sees them (issue 16): only for a logged-in operator, each
with a Content-Security-Policy that lets it load nothing from another host and run no
inline script, and every file it names served by the cloud itself. The browser tests
(tests/console/) show the pages at work; these check every page's wrapping at once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from plugstream.cloud.console.pages import CSP, NAV
from tests.cloud.test_console_auth import console_cloud, login
from tests.support import WAIT, Cloud

pytestmark = pytest.mark.socket

PAGES = [page.path for page in NAV] + ["/stations/CS-1", "/transactions/1"]


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with console_cloud(tmp_path) as c:
        await c.store.operators.add("ada", "correct-horse-battery", "admin")
        yield c


@pytest.fixture
async def http(cloud: Cloud) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}", timeout=WAIT) as c:
        yield c


@pytest.mark.parametrize("path", PAGES)
async def test_a_page_without_a_session_goes_to_the_login_and_back(
    http: httpx.AsyncClient, path: str
) -> None:
    answer = await http.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next={quote(path, safe='')}"


async def test_every_page_loads_only_its_own_files_under_a_strict_policy(
    http: httpx.AsyncClient,
) -> None:
    cookie, _ = await login(http, "ada")
    named: set[str] = set()
    for path in PAGES:
        answer = await http.get(path, headers=cookie)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        html = answer.text
        assert "<h1>" in html and '<main id="main"' in html
        scripts = re.findall(r"<script\b([^>]*)>", html)
        assert scripts and all('src="/' in attrs for attrs in scripts), path  # none inline
        assert " style=" not in html, path
        named |= set(re.findall(r'(?:src|href)="(/console/static/[^"]+)"', html))
    assert "'self'" in CSP and "http" not in CSP  # no other host is allowed anything
    for asset in sorted(named):
        served = await http.get(asset)
        assert served.status_code == 200, asset
        kind = served.headers["content-type"]
        expected = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        assert expected[Path(asset.split("?")[0]).suffix] in kind, (asset, kind)
        assert "https://" not in served.text and "http://" not in served.text.replace(
            "http://www.w3.org/2000/svg", ""
        ), asset


async def test_the_login_page_says_how_to_make_the_first_account(tmp_path: Path) -> None:
    async with (
        console_cloud(tmp_path) as cloud,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}", timeout=WAIT) as http,
    ):
        page = await http.get("/login")
        assert page.status_code == 200
        assert "plugstream cloud user add" in page.text
        await cloud.store.operators.add("ada", "correct-horse-battery", "admin")
        assert "plugstream cloud user add" not in (await http.get("/login")).text


async def test_a_logged_in_operator_is_sent_on_from_the_login_page(
    http: httpx.AsyncClient,
) -> None:
    cookie, _ = await login(http, "ada")
    answer = await http.get("/login?next=%2Ftransactions", headers=cookie)
    assert answer.status_code == 303 and answer.headers["location"] == "/transactions"
    for other_host in ("%2F%2Fevil.example%2F", "%2F%5Cevil.example", "https%3A%2F%2Fevil.example"):
        elsewhere = await http.get(f"/login?next={other_host}", headers=cookie)
        assert elsewhere.headers["location"] == "/"  # never off to another host
