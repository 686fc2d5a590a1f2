"""Network namespaces, veth pairs and the processes run in them: the lab's raw material.

Why: the article's promises (DHCP, the DNS order, NAT, the firewall's Table 2) only
mean something on a real network of real hosts. Linux network namespaces give each lab
host its own interfaces, routes and firewall on one machine, with no route to the
outside unless the lab adds one (it never does). Everything here shells out to
iproute2 (``ip``), as an administrator would; it needs root (CAP_NET_ADMIN).

Every namespace and process is owned by one :class:`Netns`, and :meth:`Netns.close`
stops the processes by PID and deletes the namespaces, so a failed test leaves nothing
behind. Names carry the owner's PID (``ps<pid>-<host>``) so parallel runs never collide.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Host", "LabUnavailable", "Netns", "lab_unavailable"]


class LabUnavailable(RuntimeError):
    """This machine cannot build the lab; ``str()`` says what is missing."""


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None: root and iproute2 are needed."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces need CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "the lab needs iproute2's `ip` command (Debian package iproute2)"
    return None


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise LabUnavailable(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


@dataclass
class Host:
    """One lab host: a network namespace and the processes started in it."""

    name: str
    """The lab's name for it (``station``, ``router``...)."""
    netns: str
    """The kernel's name of the namespace (``ps1234-station``)."""
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside this host."""
        return ["ip", "netns", "exec", self.netns, *command]

    def run(self, *command: str, check: bool = True, timeout: float = 30.0) -> str:
        """Run ``command`` in this host to completion; its stdout."""
        return _run(self.argv(*command), check=check, timeout=timeout)

    def ip(self, *args: str, check: bool = True) -> str:
        """``ip ARGS`` in this host."""
        return _run(["ip", "-n", self.netns, *args], check=check)

    def start(self, *command: str, **popen: Any) -> subprocess.Popen[Any]:
        """Start ``command`` in this host in the background; stopped by :meth:`Netns.close`."""
        popen.setdefault("stdin", subprocess.DEVNULL)
        process = subprocess.Popen(self.argv(*command), **popen)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
        """SIGTERM ``process`` by its PID, SIGKILL after ``timeout`` s."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout)
        if process in self.processes:
            self.processes.remove(process)

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}")


class Netns:
    """The namespaces of one lab, torn down together (a context manager)."""

    def __init__(self, prefix: str | None = None) -> None:
        why = lab_unavailable()
        if why is not None:
            raise LabUnavailable(why)
        self.prefix = prefix or f"ps{os.getpid()}"
        self.hosts: dict[str, Host] = {}

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, name: str) -> Host:
        """A new host with only its loopback up (no route anywhere)."""
        if name in self.hosts:
            raise ValueError(f"lab host {name!r} exists already")
        netns = f"{self.prefix}-{name}"
        _run(["ip", "netns", "del", netns], check=False)  # a leftover of a killed run
        _run(["ip", "netns", "add", netns])
        host = self.hosts[name] = Host(name, netns)
        host.ip("link", "set", "lo", "up")
        return host

    def veth(
        self,
        a: Host,
        a_if: str,
        b: Host,
        b_if: str,
        *,
        a_addr: str | None = None,
        b_addr: str | None = None,
    ) -> None:
        """A cable between ``a`` and ``b``: interfaces ``a_if`` / ``b_if``, up, with the
        given ``addr/prefix`` addresses (None: none, e.g. for a DHCP client)."""
        tmp_a, tmp_b = f"v{os.getpid() % 100000}{a_if}"[:15], f"w{os.getpid() % 100000}{b_if}"[:15]
        _run(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b])
        _run(["ip", "link", "set", tmp_a, "netns", a.netns, "name", a_if])
        _run(["ip", "link", "set", tmp_b, "netns", b.netns, "name", b_if])
        for host, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            if addr is not None:
                host.ip("addr", "add", addr, "dev", ifname)
            host.ip("link", "set", ifname, "up")

    def bridge(
        self, host: Host, name: str, members: Sequence[str], addr: str | None = None
    ) -> None:
        """A switch inside ``host`` joining its interfaces ``members``."""
        host.ip("link", "add", name, "type", "bridge")
        for member in members:
            host.ip("link", "set", member, "master", name)
        if addr is not None:
            host.ip("addr", "add", addr, "dev", name)
        host.ip("link", "set", name, "up")

    def processes(self) -> Iterator[tuple[Host, subprocess.Popen[Any]]]:
        for host in self.hosts.values():
            for process in list(host.processes):
                yield host, process

    def close(self) -> None:
        """Stop every process by PID, then delete every namespace (veths go with them)."""
        for host, process in list(self.processes()):
            with contextlib.suppress(Exception):
                host.stop(process)
        for host in self.hosts.values():
            _run(["ip", "netns", "del", host.netns], check=False)
        self.hosts.clear()
