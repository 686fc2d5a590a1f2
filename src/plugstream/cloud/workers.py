"""``plugstream cloud serve --workers K``: K gateway processes on one host, sharing its port.

One Python process carries one core's worth of stations. With ``--workers K`` the process
the operator started becomes a supervisor, which holds no database or bus connection of
its own: it starts K workers, each a fresh interpreter (``python -m
plugstream.cloud.workers``, never a fork of a process that has run an event loop) running
the one-process server (:func:`plugstream.cloud.serve.run`) as cluster node
``NODE_ID-i``, on a listening socket of its own bound with SO_REUSEPORT to the shared
address. The kernel spreads new connections over the workers' listeners; the workers
meet on the bus and in the database like the nodes of any cluster.

The supervisor binds the address first, with SO_REUSEPORT and without listening (a socket
that does not listen takes no connection): that picks the port of ``--port 0``, reports
an address in use before any worker starts, and keeps the port this server's while a
worker is being replaced.

Between supervisor and worker: the configuration, pickled, on the worker's stdin, which
then stays open as its lifeline (at its end the supervisor is gone, even by SIGKILL, and
the worker stops itself); the worker's ready line on its stdout, which the supervisor
reads instead of printing (it prints its own once every worker listens), forwarding
anything else. Workers log on the inherited stderr. Each worker runs in a process group
of its own, so that a terminal's Ctrl-C reaches the supervisor alone, which stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence

from plugstream.cloud.bus import valid_node_id
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.serve import READY, ready_line, run

__all__ = [
    "RESTARTS_PER_MINUTE",
    "RESTART_DELAY",
    "STOP_TIMEOUT",
    "WORKER_COMMAND",
    "Supervisor",
    "reuseport_socket",
    "supervise",
    "worker_main",
    "worker_node_ids",
]

log = logging.getLogger(__name__)

WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "plugstream.cloud.workers")
"""How a worker is started (its node id is appended, for ``ps``)."""
STOP_TIMEOUT = 10.0
"""s a worker has to stop after SIGTERM before it is killed."""
RESTART_DELAY = 1.0
"""s before a worker that died is replaced, doubled for each replacement within a minute."""
RESTARTS_PER_MINUTE = 5
"""Replacements of one worker within a minute; one more death and the server gives up:
a worker that keeps dying has a cause that restarting does not cure."""


def worker_node_ids(config: CloudConfig) -> list[str]:
    """The cluster node ids of ``config``'s workers: ``NODE_ID-1`` .. ``NODE_ID-K``."""
    return [f"{config.node_id}-{i}" for i in range(1, config.workers + 1)]


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (the first address ``host`` resolves to)
    with SO_REUSEADDR and SO_REUSEPORT, not yet listening: every worker binds one, and the
    kernel spreads connections over those that listen."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:  # as asyncio's create_server: IPv6 only
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclasses.dataclass(eq=False)
class _Worker:
    """One of the K places: its node id, and its process while one runs."""

    node_id: str
    listening: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    process: asyncio.subprocess.Process | None = None
    reader: asyncio.Task[None] | None = None  # of its process's stdout
    replacements: deque[float] = dataclasses.field(default_factory=deque)


class Supervisor:
    """Keeps ``config.workers`` worker processes serving ``config.port`` (a concrete port,
    already bound by the caller) until :meth:`stop`; :meth:`run` says how it ended.

    ``command`` starts a worker (its node id appended); ``ready`` gets the server's ready
    line once every worker listens (default: printed on stdout)."""

    def __init__(
        self,
        config: CloudConfig,
        *,
        command: Sequence[str] = WORKER_COMMAND,
        ready: Callable[[str], None] | None = None,
        stop_timeout: float = STOP_TIMEOUT,
        restart_delay: float = RESTART_DELAY,
        restarts_per_minute: int = RESTARTS_PER_MINUTE,
    ) -> None:
        self.config = config
        self.command = tuple(command)
        self.ready = ready
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.restarts_per_minute = restarts_per_minute
        self.failure: str | None = None  # why the server gave up, once it did
        self._workers = [_Worker(node_id) for node_id in worker_node_ids(config)]
        self._stop = asyncio.Event()

    def pids(self) -> dict[str, int]:
        """The PID of each worker's running process, by node id."""
        return {
            w.node_id: w.process.pid
            for w in self._workers
            if w.process is not None and w.process.returncode is None
        }

    def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after ``stop_timeout``) and end :meth:`run`."""
        self._stop.set()

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self._stop.set()

    async def run(self) -> int:
        """Serve until stopped: 0 after a clean stop; 1, with one line on stderr, when a
        worker could not start, kept dying or would not stop."""
        keepers = [asyncio.create_task(self._keep(w)) for w in self._workers]
        everyone = asyncio.create_task(self._all_listening())
        stopping = asyncio.create_task(self._stop.wait())
        await asyncio.wait({everyone, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if everyone.done() and not self._stop.is_set():
            line = ready_line(self.config, self.config.port)
            if self.ready is not None:
                self.ready(line)
            else:
                print(line, flush=True)
        everyone.cancel()
        await stopping
        await asyncio.gather(*keepers)
        if self.failure is not None:
            print(f"plugstream: error: {self.failure}", file=sys.stderr, flush=True)
            return 1
        return 0

    async def _all_listening(self) -> None:
        for worker in self._workers:
            await worker.listening.wait()

    async def _keep(self, worker: _Worker) -> None:
        """Run ``worker``'s process, and a replacement whenever it dies, until the stop."""
        try:
            while not self._stop.is_set():
                try:
                    process = await self._start(worker)
                except OSError as exc:
                    self._fail(f"cannot start worker {worker.node_id}: {exc}")
                    return
                code = await self._exit_or_stop(worker, process)
                if code is None or self._stop.is_set():
                    return
                if not worker.listening.is_set():
                    self._fail(f"worker {worker.node_id} could not start ({_exit_text(code)})")
                    return
                delay = self._replacement_delay(worker)
                if delay is None:
                    self._fail(
                        f"worker {worker.node_id} died {self.restarts_per_minute + 1} times "
                        f"within a minute, the last time {_exit_text(code)}: giving up"
                    )
                    return
                log.warning(
                    "worker %s (pid %d) %s; a replacement starts in %g s",
                    worker.node_id,
                    process.pid,
                    _exit_text(code),
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        except Exception as exc:  # a bug here must not leave the other workers unsupervised
            log.exception("supervising worker %s failed", worker.node_id)
            self._fail(f"supervising worker {worker.node_id} failed: {exc!r}")
        finally:
            await self._end(worker)

    async def _start(self, worker: _Worker) -> asyncio.subprocess.Process:
        config = dataclasses.replace(self.config, node_id=worker.node_id, workers=1)
        process = await asyncio.create_subprocess_exec(
            *self.command,
            worker.node_id,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            process_group=0,
        )
        worker.process = process
        worker.reader = asyncio.create_task(self._read(worker, process))
        assert process.stdin is not None
        process.stdin.write(pickle.dumps(config))
        # A worker that is already gone says why by its exit.
        with contextlib.suppress(ConnectionError):
            await process.stdin.drain()
        return process

    async def _exit_or_stop(
        self, worker: _Worker, process: asyncio.subprocess.Process
    ) -> int | None:
        """The process's exit code once it exits (and all it printed is read), None once
        the stop comes first."""
        exited = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            exited.cancel()
        if process.returncode is None:
            return None
        if worker.reader is not None:
            await worker.reader  # its stdout ends with it
        return process.returncode

    async def _read(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        """A worker's stdout: its ready line marks it listening, the rest is passed on."""
        stdout = process.stdout
        assert stdout is not None
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # a line over the reader's limit: dropped
                continue
            if not line:
                return
            text = line.decode(errors="replace")
            if text.startswith(READY):
                if worker.listening.is_set():
                    log.info("worker %s (pid %d) is serving again", worker.node_id, process.pid)
                worker.listening.set()
            else:
                sys.stdout.write(text)
                sys.stdout.flush()

    def _replacement_delay(self, worker: _Worker) -> float | None:
        """The back-off before ``worker`` is replaced, None when it was replaced too often."""
        now = asyncio.get_running_loop().time()
        recent = worker.replacements
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= self.restarts_per_minute:
            return None
        recent.append(now)
        return self.restart_delay * (1 << (len(recent) - 1))

    async def _end(self, worker: _Worker) -> None:
        """Stop ``worker``'s process, if it runs: SIGTERM, then SIGKILL after ``stop_timeout``."""
        process = worker.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                self._fail(
                    f"worker {worker.node_id} (pid {process.pid}) did not stop within "
                    f"{self.stop_timeout:g} s of SIGTERM and was killed"
                )
        if worker.reader is not None:
            await worker.reader


def supervise(config: CloudConfig) -> int:
    """Serve with ``config.workers`` worker processes until SIGTERM or SIGINT: 0 after a
    clean stop, 1 (one line on stderr) when the address is taken or a worker could not
    start, 2 when the workers' node ids would not be valid ones."""
    ids = worker_node_ids(config)
    if not all(valid_node_id(node_id) for node_id in ids):
        print(
            f"plugstream: error: --node-id {config.node_id!r} is too long for --workers "
            f"{config.workers}: the workers' ids ({ids[0]} .. {ids[-1]}) have at most 32 "
            "characters",
            file=sys.stderr,
        )
        return 2
    host = f"[{config.host}]" if ":" in config.host else config.host
    try:
        reserved = reuseport_socket(config.host, config.port)
    except OSError as exc:
        print(
            f"plugstream: error: cannot listen on {host}:{config.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    with reserved:  # held, not listening, until every worker is gone
        port = int(reserved.getsockname()[1])
        return asyncio.run(_supervised(dataclasses.replace(config, port=port)))


async def _supervised(config: CloudConfig) -> int:
    supervisor = Supervisor(config)
    loop = asyncio.get_running_loop()
    stops = (signal.SIGINT, signal.SIGTERM)
    for sig in stops:
        loop.add_signal_handler(sig, supervisor.stop)
    try:
        return await supervisor.run()
    finally:
        for sig in stops:
            loop.remove_signal_handler(sig)


def _stop_with_supervisor() -> None:
    """The worker's lifeline: its stdin ends when the supervisor is gone, however it went;
    the worker then stops as if told to."""
    # os.read, not sys.stdin: a daemon thread blocked in a buffered reader holds its lock,
    # which the interpreter's shutdown then cannot take.
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    os.kill(os.getpid(), signal.SIGTERM)


def worker_main() -> int:
    """A worker: the configuration from stdin, then the one-process server on a listening
    socket of its own on the shared address."""
    config = pickle.load(sys.stdin.buffer)
    if not isinstance(config, CloudConfig):
        print("plugstream: error: a worker reads its configuration on stdin", file=sys.stderr)
        return 2
    if config.log_format == "json":
        from plugstream.cloud.logs import use_json_logs

        use_json_logs()
    try:
        sock = reuseport_socket(config.host, config.port)
    except OSError as exc:
        print(
            f"plugstream: error: worker {config.node_id} cannot listen on port "
            f"{config.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    threading.Thread(target=_stop_with_supervisor, name="lifeline", daemon=True).start()
    return run(config, sockets=[sock])


if __name__ == "__main__":
    sys.exit(worker_main())
