"""``plugstream firmware``: upload images and roll them out through the REST API.

A thin client of ``/api/v1/firmware`` and ``/api/v1/rollouts`` (:mod:`.api`): every
command is one or two HTTP requests, so what it does is what an operator's own script
would do. ``--url``, ``--token`` (``PLUGSTREAM_API_TOKEN``) and ``--cacert`` (the CSMS
root, e.g. ``pki/csms-root.pem``, to trust the server's https certificate) say where.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import httpx

firmware_app = typer.Typer(
    help="Firmware images and rollouts on PlugStream Cloud (through its REST API).",
    no_args_is_help=True,
    add_completion=False,
)

UPLOAD_CHUNK = 1 << 20

Url = Annotated[
    str,
    typer.Option(envvar="PLUGSTREAM_URL", help="The cloud's base URL (https://host:port)."),
]
Token = Annotated[
    str | None,
    typer.Option(envvar="PLUGSTREAM_API_TOKEN", help="Bearer token of the REST API."),
]
CaCert = Annotated[
    Path | None,
    typer.Option(
        exists=True, dir_okay=False, help="CA (PEM) to trust for https, e.g. pki/csms-root.pem."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]
DEFAULT_URL = "http://127.0.0.1:9000"


def _client(url: str, token: str | None, cacert: Path | None) -> httpx.Client:
    import ssl

    import httpx

    verify: ssl.SSLContext | bool = True
    if cacert is not None:
        verify = ssl.create_default_context(cafile=str(cacert))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=url.rstrip("/") + "/api/v1", headers=headers, verify=verify, timeout=600
    )


def _answer(response: httpx.Response, ok: int = 200) -> Any:
    """The JSON of a successful answer; the API's reason, and exit 1, otherwise."""
    if response.status_code != ok:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        typer.echo(f"error {response.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    return response.json() if response.content else None


def _request(fn: Any) -> Any:
    import httpx

    try:
        return fn()
    except httpx.HTTPError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _print_rollout(rollout: dict[str, Any]) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in rollout["counts"].items()) or "no targets"
    typer.echo(f"rollout {rollout['rollout_id']} of image {rollout['image_id']}: {counts}")
    for t in rollout["targets"]:
        typer.echo(f"  {t['station_id']:<24} requestId {t['request_id']:<8} {t['status']}")


@firmware_app.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The image.")],
    version: Annotated[str, typer.Option(help="The firmware version it installs.")],
    filename: Annotated[
        str | None, typer.Option(help="Name in the download URL (default: the file's).")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    cacert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """Upload an image: the cloud stores it, hashes it and signs it with its PKI."""

    def chunks() -> Iterator[bytes]:
        with file.open("rb") as f:
            while chunk := f.read(UPLOAD_CHUNK):
                yield chunk

    with _client(url, token, cacert) as client:
        image = _answer(
            _request(
                lambda: client.post(
                    "/firmware",
                    params={"version": version, "filename": filename or file.name},
                    content=chunks(),
                    headers={"Content-Type": "application/octet-stream"},
                )
            ),
            201,
        )
    if as_json:
        typer.echo(json.dumps(image, indent=2))
        return
    typer.echo(f"image {image['image_id']}  version {image['version']}  {image['size']} bytes")
    typer.echo(f"sha256   {image['sha256']}")
    typer.echo(f"location {image['location']}")


@firmware_app.command("list")
def list_images(
    url: Url = DEFAULT_URL, token: Token = None, cacert: CaCert = None, as_json: AsJson = False
) -> None:
    """The images in the repository, newest first."""
    with _client(url, token, cacert) as client:
        images = _answer(_request(lambda: client.get("/firmware")))
    if as_json:
        typer.echo(json.dumps(images, indent=2))
        return
    for i in images:
        typer.echo(f"{i['image_id']}  {i['version']:<16} {i['size']:>12}  {i['filename']}")


@firmware_app.command("delete")
def delete(
    image_id: Annotated[str, typer.Argument(help="The image's id.")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    cacert: CaCert = None,
) -> None:
    """Delete an image and its rollouts."""
    with _client(url, token, cacert) as client:
        _answer(_request(lambda: client.delete(f"/firmware/{image_id}")), 204)
    typer.echo(f"deleted {image_id}")


@firmware_app.command("rollout")
def rollout(
    image_id: Annotated[str, typer.Argument(help="The image to install.")],
    station: Annotated[
        list[str] | None, typer.Option("--station", "-s", help="A station id (repeatable).")
    ] = None,
    percentage: Annotated[
        float | None,
        typer.Option(min=0.0, max=100.0, help="This share of the registered stations instead."),
    ] = None,
    retrieve_at: Annotated[
        str | None, typer.Option(help="ISO 8601 with offset: download from then (default now).")
    ] = None,
    install_at: Annotated[
        str | None, typer.Option(help="ISO 8601 with offset: install at that time.")
    ] = None,
    retries: Annotated[int | None, typer.Option(min=0, help="Download retries.")] = None,
    retry_interval: Annotated[
        int | None, typer.Option(min=0, help="Seconds between download retries.")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    cacert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """Send an image to stations (connected ones now, the others when they next boot)."""
    if (not station) == (percentage is None):
        raise typer.BadParameter("give --station (one or more) or --percentage, not both")
    body: dict[str, Any] = {"station_ids": station} if station else {"percentage": percentage}
    for key, value in (
        ("retrieve_at", retrieve_at),
        ("install_at", install_at),
        ("retries", retries),
        ("retry_interval", retry_interval),
    ):
        if value is not None:
            body[key] = value
    with _client(url, token, cacert) as client:
        done = _answer(
            _request(lambda: client.post(f"/firmware/{image_id}/rollouts", json=body)), 201
        )
    if as_json:
        typer.echo(json.dumps(done, indent=2))
    else:
        _print_rollout(done)


@firmware_app.command("status")
def status(
    rollout_id: Annotated[
        int | None, typer.Argument(help="One rollout (default: the newest ones).")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    cacert: CaCert = None,
    as_json: AsJson = False,
) -> None:
    """Progress of rollouts: each station's requestId and last firmware status."""
    path = f"/rollouts/{rollout_id}" if rollout_id is not None else "/rollouts"
    with _client(url, token, cacert) as client:
        found = _answer(_request(lambda: client.get(path)))
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for one in [found] if rollout_id is not None else found:
        _print_rollout(one)
