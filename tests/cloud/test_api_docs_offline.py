"""The API docs work on a network without internet access (issue 16): every file the page
loads is served by the cloud itself, from the installed ``swagger-ui-py`` package
(Swagger UI 5, which reads OpenAPI 3.1), and its Content-Security-Policy lets the browser
load nothing from another host."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from plugstream.cloud.api.docs import ASSETS, SWAGGER_UI_DIR
from plugstream.cloud.app import create_app
from plugstream.cloud.config import CloudConfig
from tests.support import WAIT, running_cloud

TOKEN = "test-token-0123456789"
REPO = Path(__file__).resolve().parents[2]
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
# What a docs page may allow: the cloud itself, data: URIs (swagger-ui.css's icons),
# nothing at all, and inline scripts by hash.
SAFE_SOURCES = {"'self'", "'none'", "data:"}


class Page(HTMLParser):
    """Every URL a page references (src, href) and the text of its inline scripts."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value for name, value in attrs if name in ("src", "href") and value}
        self.urls += [value for value in found.values() if value is not None]
        if tag == "script" and "src" not in found:
            self._in_inline_script = True
            self.inline_scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data


def policy(header: str) -> dict[str, list[str]]:
    directives = (d.split() for d in header.split(";") if d.strip())
    return {name: sources for name, *sources in directives}


def sha256_source(script: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


def assert_only_self(response: httpx.Response, page: Page) -> None:
    """The page's policy allows nothing from another host, and its own inline scripts."""
    directives = policy(response.headers["content-security-policy"])
    assert directives["default-src"] == ["'none'"]
    for name, sources in directives.items():
        for source in sources:
            assert source in SAFE_SOURCES or source.startswith("'sha256-"), (name, source)
    assert "data:" not in directives["script-src"] + directives["connect-src"]
    hashes = {s for s in directives["script-src"] if s.startswith("'sha256-")}
    assert hashes == {sha256_source(script) for script in page.inline_scripts}
    assert directives["frame-ancestors"] == ["'none'"]


@pytest.mark.socket
async def test_docs_load_everything_from_the_cloud(tmp_path: Path) -> None:
    async with (
        running_cloud(tmp_path, api_token=TOKEN) as cloud,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}", timeout=WAIT) as http,
    ):
        docs = await http.get("/api/v1/docs")  # a browser's page load: no token
        assert docs.status_code == 200
        assert docs.headers["content-type"].startswith("text/html")
        assert "://" not in docs.text  # no URL with a scheme, in attributes or the script
        page = Page(docs.text)
        assert page.urls and len(page.inline_scripts) == 1
        assert "'/api/v1/openapi.json'" in page.inline_scripts[0]
        assert_only_self(docs, page)

        served = set()
        for url in page.urls:
            parts = urlsplit(url)
            assert (parts.scheme, parts.netloc) == ("", ""), url
            assert url.startswith("/api/v1/docs/static/"), url
            asset = await http.get(url)
            assert asset.status_code == 200, url
            suffix = Path(parts.path).suffix
            assert CONTENT_TYPES[suffix] in asset.headers["content-type"], url
            name = parts.path.rsplit("/", 1)[1]
            assert asset.content == (SWAGGER_UI_DIR / name).read_bytes()  # the package's file
            served.add(name)
        assert served == ASSETS

        # Swagger UI's OAuth2 redirect page, under the same policy.
        redirect = await http.get("/api/v1/docs/oauth2-redirect")
        assert redirect.status_code == 200
        assert "://" not in redirect.text
        assert_only_self(redirect, Page(redirect.text))

        # The OpenAPI document as before: no token needed to read it, and it offers the
        # bearer scheme to Swagger UI's Authorize button; the API itself stays guarded.
        spec = await http.get("/api/v1/openapi.json")
        assert spec.status_code == 200
        assert "HTTPBearer" in spec.json()["components"]["securitySchemes"]
        assert (await http.get("/api/v1/stations")).status_code == 401
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        assert (await http.get("/api/v1/stations", headers=authorized)).status_code == 200


@pytest.mark.unit
async def test_only_the_pages_files_are_served() -> None:
    app = create_app(CloudConfig(api_token=TOKEN))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
        for name in ("oauth2-redirect.html", "swagger-initializer.js", "swagger-editor.js"):
            assert (SWAGGER_UI_DIR / name).exists()
            assert (await http.get(f"/api/v1/docs/static/{name}")).status_code == 404, name
        escape = "/api/v1/docs/static/..%2F..%2F__init__.py"  # the package's own module
        assert (await http.get(escape)).status_code == 404
        assert (await http.get("/docs")).status_code == 404  # FastAPI's CDN page is off
        assert (await http.get("/docs/oauth2-redirect")).status_code == 404
        assert (await http.get("/api/v1/redoc")).status_code == 404


@pytest.mark.unit
async def test_setup_service_docs_are_offline_too() -> None:
    app = create_app(CloudConfig(setup_only=True))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://setup") as http:
        docs = await http.get("/setup/v1/docs")
        assert docs.status_code == 200
        assert "://" not in docs.text
        page = Page(docs.text)
        assert_only_self(docs, page)
        assert "'/setup/v1/openapi.json'" in page.inline_scripts[0]
        for url in page.urls:
            assert url.startswith("/setup/v1/docs/static/"), url
            assert (await http.get(url)).status_code == 200, url


@pytest.mark.unit
async def test_docs_follow_the_root_path() -> None:
    """Behind a proxy that mounts the cloud under a path, the page's URLs carry it."""
    app = create_app(CloudConfig(api_token=TOKEN))
    transport = httpx.ASGITransport(app=app, root_path="/cloud")
    async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
        page = Page((await http.get("/api/v1/docs")).text)
        assert all(url.startswith("/cloud/api/v1/docs/static/") for url in page.urls)
        assert "'/cloud/api/v1/openapi.json'" in page.inline_scripts[0]


@pytest.mark.socket
def test_no_swagger_ui_file_in_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    vendored = {p.name for p in SWAGGER_UI_DIR.iterdir()}
    assert [p for p in tracked if Path(p).name in vendored or "swagger-ui" in p] == []


@pytest.mark.unit
def test_the_swagger_ui_served_reads_the_openapi_version_the_api_declares() -> None:
    """FastAPI declares OpenAPI 3.1; Swagger UI 4 (the swagger-ui-bundle package) shows
    "Unable to render this definition" for it, which only a browser showed. Swagger UI 5
    knows 3.1 (its bundle has the isOAS31 selector)."""
    declared = create_app(CloudConfig()).openapi()["openapi"]
    bundle = (SWAGGER_UI_DIR / "swagger-ui-bundle.js").read_text("utf-8", "replace")
    assert declared.startswith("3.1")
    assert "isOAS31" in bundle
