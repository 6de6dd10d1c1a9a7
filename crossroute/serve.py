"""Running the server: one process (granian embedded in our asyncio loop) or several workers.

Both bind the listening socket themselves (``ports.bind_listener``: exclusive, a busy port is
one clear line) and hand it to granian. Signals:

- SIGTERM or SIGINT: stop taking new requests (503), let the ones in flight finish for at most
  ``shutdown-timeout-seconds``, end what is left with each format's terminal error event, then
  stop the server and the gateway; exit 0. A second SIGTERM or SIGINT exits at once.
- SIGHUP: reload config.yaml (the same check-then-apply as the file watcher); nothing restarts.

With ``--workers N`` the parent process only holds the socket and relays signals; each worker
runs the sequence above itself (see ``worker.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from granian._granian import SocketHolder
from granian.constants import Interfaces, Loops
from granian.server.embed import Server as EmbeddedServer
from granian.server.mp import MPServer

from .config import Settings
from .edge_server import server_options
from .ports import ListenError, bind_listener

log = logging.getLogger("crossroute")

BACKLOG = 2048
STOP_GRACE = 2.0  # seconds granian gets after the drain deadline to finish what it still has
CONFIG_ENV = "CROSSROUTE_CONFIG"
WORKERS_ENV = "CROSSROUTE_WORKERS"
LISTEN_ENV = "CROSSROUTE_LISTEN"
PEERS_ENV = "CROSSROUTE_PEERS"
WORKER_INDEX_ENV = "CROSSROUTE_WORKER_INDEX"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def display_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _hand_over(server: Any, sock: socket.socket) -> None:
    """Make granian serve ``sock`` (it owns the descriptor from now on, and closes it on stop)."""
    fd = sock.detach()
    server._ssp = None
    server._shd = SocketHolder(fd, False, server.backlog)
    server._sfd = fd


class _OwnSocketServer(EmbeddedServer):
    """granian's embedded server on a socket crossroute bound (granian would bind its own)."""

    def __init__(self, target: Any, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._own_sock: socket.socket | None = sock

    def _init_shared_socket(self) -> None:
        assert self._own_sock is not None
        _hand_over(self, self._own_sock)
        self._own_sock = None


# ------------------------------------------------------------------ one process


async def serve_one(path: Path, settings: Settings) -> int:
    from .app import App
    from .gateway import Gateway
    from .reload import reload_once, watch_config

    try:
        sock = bind_listener(settings.host, settings.port, BACKLOG)
    except ListenError as exc:
        say(str(exc))
        return 1
    gateway = Gateway(settings)
    await gateway.start()
    app = App(gateway)
    server = _OwnSocketServer(app, sock, address=settings.host, port=settings.port, interface=Interfaces.RSGI,
                              log_enabled=False, backlog=BACKLOG, **server_options(settings))
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []
    reloads: set[asyncio.Task[bool]] = set()

    def on_stop(signum: int) -> None:
        if stopping:
            say(f"crossroute: {signal.Signals(signum).name} again: exiting now")
            os._exit(128 + signum)
        timeout = app.gateway.settings.shutdown_timeout
        say(f"crossroute: {signal.Signals(signum).name}: finishing the requests in flight (at most {timeout:g} s; "
            "send the signal again to exit at once)")
        stopping.append(loop.create_task(_drain_then_stop(app, server, seconds=timeout)))

    def on_hup() -> None:
        log.info("SIGHUP: reloading %s", path)
        reloads.add(task := loop.create_task(reload_once(path, app, explain=True)))
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop, sig)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    gc.collect()
    gc.freeze()  # start-up objects live for the whole run: keep them out of every later collection
    watcher = asyncio.create_task(watch_config(path, app))
    serving = asyncio.create_task(server.serve())
    await asyncio.sleep(0)
    say(f"crossroute: listening on http://{display_host(settings.host)}:{settings.port}")
    try:
        await serving
    finally:
        watcher.cancel()
        await gateway.stop()
    say("crossroute: stopped")
    return 0


async def _drain_then_stop(app: Any, server: EmbeddedServer, seconds: float) -> None:
    """New requests get 503 at once; those in flight get ``seconds``, then their
    terminal error event; then granian stops (it closes the listener and idle connections,
    and waits for the requests it still has, which are none by then)."""
    try:
        app.begin_drain()
        await app.drain(seconds)
    except Exception:
        log.exception("draining failed; stopping anyway")
    server.stop()
    # granian waits for its requests without a deadline; one still waiting on an upstream (not
    # a stream, which drain ended) must not hold the exit past the deadline for long
    await asyncio.sleep(STOP_GRACE)
    say(f"crossroute: requests still in flight {STOP_GRACE:g} s after the shutdown deadline; exiting")
    os._exit(0)


# ------------------------------------------------------------------ several workers


class _WorkersServer(MPServer):
    """granian's multi-process server on crossroute's socket, with crossroute's signals: the
    parent relays SIGTERM/SIGINT (once) and SIGHUP to the workers, which drain or reload
    themselves; a second SIGTERM/SIGINT kills them and exits."""

    def __init__(self, target: Any, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._own_sock: socket.socket | None = sock
        self._signals = 0
        self._parent = os.getpid()

    def _init_shared_socket(self) -> None:
        assert self._own_sock is not None
        _hand_over(self, self._own_sock)
        self._own_sock = None
        sock = socket.socket(fileno=self._sfd)
        sock.set_inheritable(True)
        self._sso = sock  # closed by granian's _drop_shared_socket

    def signal_handler_interrupt(self, signum: int | None = None, *args: Any, **kwargs: Any) -> None:
        if os.getpid() != self._parent:
            # a worker that has not taken over its signals yet (they are inherited from here)
            if signum == signal.SIGTERM:
                from . import worker

                worker.stop_requested()
            return
        self._signals += 1
        name = signal.Signals(signum).name if signum else "signal"
        if self._signals > 1:
            say(f"crossroute: {name} again: exiting now")
            for wrk in list(self.wrks):
                try:
                    wrk.kill()
                except Exception:  # already gone
                    pass
            os._exit(128 + (signum or signal.SIGTERM))
        say(f"crossroute: {name}: the workers finish the requests in flight (send the signal again to exit at once)")
        super().signal_handler_interrupt()

    def _spawn_worker(self, idx: int, target: Any, callback_loader: Any) -> Any:
        os.environ[WORKER_INDEX_ENV] = str(idx)  # read by the worker (forked with this environment)
        return super()._spawn_worker(idx, target, callback_loader)

    def signal_handler_reload(self, *args: Any, **kwargs: Any) -> None:
        if os.getpid() != self._parent:
            return  # a worker still starting: it reads the config file as it is now anyway
        for wrk in list(self.wrks):
            pid = wrk.inner.pid
            if pid:
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass


def serve_workers(path: Path, settings: Settings, workers: int) -> int:
    from . import worker

    try:
        sock = bind_listener(settings.host, settings.port, BACKLOG)
    except ListenError as exc:
        say(str(exc))
        return 1
    os.environ[CONFIG_ENV] = str(path.resolve())
    os.environ[WORKERS_ENV] = str(workers)
    os.environ[LISTEN_ENV] = f"{settings.host} {settings.port}"
    worker.prepare_parent(settings)
    # where the workers publish their metrics for each other (observe/metrics_share.py): private
    # (0700), removed when serve ends; a directory given in the environment is left alone
    metrics_dir = None if os.environ.get("CROSSROUTE_METRICS_DIR") else tempfile.mkdtemp(prefix="crossroute-metrics-")
    if metrics_dir is not None:
        os.environ["CROSSROUTE_METRICS_DIR"] = metrics_dir
    server = _WorkersServer(
        "crossroute.app:app_from_env", sock, factory=True, address=settings.host, port=settings.port,
        interface=Interfaces.RSGI, workers=workers, loop=Loops.uvloop, log_enabled=False,
        backlog=BACKLOG, **server_options(settings),
    )
    links = None
    if settings.redis_url:
        pass  # Redis holds bindings and cooldowns for every worker (and every machine)
    elif multiprocessing.get_start_method() == "fork":
        from .state.peers import links_env, make_links

        links = make_links(workers)  # kept open here for the workers' lifetime (and respawns)
        os.environ[PEERS_ENV] = links_env(links)
        log.info("the %d workers share session bindings and cooldowns with each other (in memory; "
                 "state.redis-url shares them between machines too)", workers)
    else:
        log.warning(
            "the %d workers keep separate session bindings and cooldowns: a conversation may be placed on "
            "another credential by another worker, and a credential cooling down in one worker is still "
            "tried by the others; set state.redis-url to share them", workers)
    say(f"crossroute: {workers} worker processes listening on http://{display_host(settings.host)}:{settings.port}")
    try:
        server.serve()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    del links
    say("crossroute: stopped")
    return 0
