"""Every test is one of three kinds, by what it needs of the machine:

- ``unit``: in-process, no network socket and no child process: the edit-test loop
  (``pytest -m unit``, ``make unit``), a few seconds for all of them;
- ``socket``: real sockets on loopback, real child processes (a cloud, a station, a peer);
- ``lab``: hosts in network namespaces, dnsmasq, nftables: root and the lab's packages.

A test says its kind with a marker: its own (a decorator, or a parametrized case's marks)
before its class's or its module's ``pytestmark``. One that says none, or two at one
level, is an error at collection. A ``unit`` test that opens an IP
socket or starts a process fails with the reason, so the kinds stay true.

``PLUGSTREAM_TEST_KINDS=FILE`` writes, for each test run, what it was seen to use (for
finding the kind of a new test): ``{"nodeid": ["socket", "process", ...]}``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

KINDS = ("unit", "socket", "lab")
# asyncio's loop wakes itself through an AF_UNIX socketpair: only IP sockets are watched
_INET = (socket.AF_INET, socket.AF_INET6)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by the kinds settled here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Settle each test's one kind: its own (a decorator, or a parametrized case's, such as
    the PostgreSQL case of a storage test) before its class's or module's."""
    if os.environ.get("PLUGSTREAM_TEST_KINDS"):
        return  # finding the kinds: the markers may not be there yet
    wrong = []
    parents: set[pytest.Node] = set()
    for item in items:
        callspec = getattr(item, "callspec", None)
        case = {m.name for m in (callspec.marks if callspec else ()) if m.name in KINDS}
        if case:  # the case's kind over the function's
            item.own_markers[:] = [
                m for m in item.own_markers if m.name not in KINDS or m.name in case
            ]
        kinds = {m.name for m in item.own_markers if m.name in KINDS}
        node = item.parent
        while not kinds and node is not None:
            inherited = [m for m in node.own_markers if m.name in KINDS]
            kinds = {m.name for m in inherited}
            item.own_markers.extend(inherited)
            node = node.parent
        if len(kinds) != 1:
            wrong.append(f"{item.nodeid}: {sorted(kinds) or 'no kind'}")
        parents.update(item.listchain()[:-1])
    for parent in parents:  # each item now carries its kind itself
        parent.own_markers[:] = [m for m in parent.own_markers if m.name not in KINDS]
    if wrong:
        raise pytest.UsageError(
            "each test needs exactly one of the markers unit, socket, lab:\n  " + "\n  ".join(wrong)
        )


class _Uses:
    """What the running test was seen to use; what a unit test may not."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.forbid = False

    def saw(self, what: str, detail: str) -> None:
        self.seen.add(what)
        if self.forbid:
            raise AssertionError(
                f"a unit test used a {what} ({detail}): mark it pytest.mark.socket"
            )


_USES = _Uses()
_RECORD: dict[str, list[str]] = {}


def _watch(owner: Any, name: str, what: str, describe: Callable[..., str | None]) -> Any:
    original = getattr(owner, name)

    def watched(*args: Any, **kwargs: Any) -> Any:
        detail = describe(*args, **kwargs)
        if detail is not None:
            _USES.saw(what, detail)
            if "netns" in detail:
                _USES.seen.add("netns")
        return original(*args, **kwargs)

    setattr(owner, name, watched)
    return original


def _inet(sock: socket.socket, address: Any, *_: Any) -> str | None:
    return f"{address!r}" if sock.family in _INET else None


@pytest.fixture(scope="session", autouse=True)
def _watch_uses() -> Iterator[None]:
    originals = [
        (socket.socket, "connect", _watch(socket.socket, "connect", "socket", _inet)),
        (socket.socket, "connect_ex", _watch(socket.socket, "connect_ex", "socket", _inet)),
        (socket.socket, "bind", _watch(socket.socket, "bind", "socket", _inet)),
        (
            subprocess.Popen,
            "__init__",
            _watch(
                subprocess.Popen,
                "__init__",
                "process",
                lambda self, args, *a, **k: f"{args!r}"[:120],
            ),
        ),
    ]
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
        out = os.environ.get("PLUGSTREAM_TEST_KINDS")
        if out:
            out += os.environ.get("PYTEST_XDIST_WORKER", "")  # one file per parallel worker
            with open(out, "w") as f:
                json.dump(_RECORD, f, indent=0, sort_keys=True)


@pytest.fixture(autouse=True)
def _kind(request: pytest.FixtureRequest) -> Iterator[None]:
    _USES.seen = set()
    _USES.forbid = request.node.get_closest_marker("unit") is not None
    try:
        yield
    finally:
        _USES.forbid = False
        if os.environ.get("PLUGSTREAM_TEST_KINDS"):
            _RECORD[request.node.nodeid] = sorted(_USES.seen)
