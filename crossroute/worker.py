"""Inside one worker process of ``crossroute serve --workers N``.

granian's worker loads ``crossroute.app:app_from_env`` and calls the App's ``__rsgi_init__``
before it serves; that calls ``start`` here, which starts the gateway (so the first request
finds it ready), links its in-process state to the other workers' (``state/peers.py``),
watches config.yaml, and takes over the worker's signals:

- SIGTERM (sent by the parent, once): drain like the single process does — 503 for new
  requests, ``shutdown-timeout-seconds`` for those in flight, then their terminal error
  event — and only then let granian stop this worker.
- SIGHUP (relayed by the parent): reload config.yaml in this worker.
- SIGINT is ignored: Ctrl-C reaches every process of the group, and the parent turns it into
  the SIGTERM above (and a second one into SIGKILL), so one Ctrl-C drains once.

granian creates the worker's stop signal (a ``WorkerSignal``) in ``set_loop_signals``;
``prepare_parent`` wraps that function (before the workers fork) to keep a reference to it.
uvloop hears a signal only while the loop runs, and granian runs it twice (our start-up, then
serving): a SIGTERM at any moment of a worker's start-up is remembered by a plain Python
handler and drains once the worker serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App
    from .config import Settings

log = logging.getLogger("crossroute")

CONFIG_ENV = "CROSSROUTE_CONFIG"
PEERS_ENV = "CROSSROUTE_PEERS"
WORKER_INDEX_ENV = "CROSSROUTE_WORKER_INDEX"

_granian_stop: list[Any] = []  # the WorkerSignal of this worker process, once granian made it
_tasks: list[asyncio.Task[Any]] = []
_stop_early: list[bool] = []  # SIGTERM came while this worker was still starting


def stop_requested() -> None:
    """SIGTERM before ``start`` took over the signals (called from the inherited handler)."""
    _stop_early[:] = [True]


def prepare_parent(settings: Settings) -> None:
    """In the parent, before granian forks the workers."""
    import granian._signals as gsignals

    original = gsignals.set_loop_signals
    if getattr(original, "_crossroute", False):
        return

    def set_loop_signals(loop: asyncio.AbstractEventLoop) -> Any:
        event = original(loop)
        _granian_stop[:] = [event]
        # until ``start`` takes over, a SIGTERM is remembered (granian's handler, reached only
        # while the loop runs, would be lost between two runs)
        signal.signal(signal.SIGTERM, lambda _n, _f: stop_requested())
        return event

    set_loop_signals._crossroute = True  # type: ignore[attr-defined]
    gsignals.set_loop_signals = set_loop_signals


def start(app: App, loop: asyncio.AbstractEventLoop) -> None:
    """From ``App.__rsgi_init__`` in a worker (the loop is not running yet)."""
    from .reload import reload_once, watch_config

    path = Path(os.environ[CONFIG_ENV])
    draining: list[asyncio.Task[None]] = []
    serving = asyncio.Event()

    def on_term() -> None:
        if draining:
            return  # the parent relays a repeated signal; it kills this worker itself when asked twice
        draining.append(loop.create_task(_drain_then_stop(app, serving)))

    def on_hup() -> None:
        log.info("SIGHUP: worker %d reloading %s", os.getpid(), path)
        _tasks.append(loop.create_task(reload_once(path, app, explain=True)))

    # first of all: a SIGTERM while the gateway starts must drain, not go to granian's handler
    # (its stop signal, set before granian serves, would be lost and the worker never end)
    if _granian_stop:  # else granian's own handler stays: it stops at once
        loop.add_signal_handler(signal.SIGTERM, on_term)
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        # uvloop hears signals only while it runs; one that comes between two runs (granian runs
        # the loop again only once it serves) reaches this Python handler instead
        signal.signal(signal.SIGTERM, lambda _n, _f: loop.call_soon_threadsafe(on_term))
    # SIGHUP through a Python handler only: uvloop's own (add_signal_handler) misses a signal that
    # comes between the loop's two runs, right after "ready"; this one is remembered until it runs
    signal.signal(signal.SIGHUP, lambda _n, _f: loop.call_soon_threadsafe(on_hup))
    loop.run_until_complete(app.gateway.start())
    _share_state(app, loop)
    from .observe.metrics_share import join as share_metrics

    share_metrics(app.gateway, loop)  # /metrics of any worker reports the whole server
    _tasks.append(loop.create_task(watch_config(path, app)))
    _tasks.append(loop.create_task(_recheck(path, app)))
    if _stop_early and _granian_stop:
        on_term()
    # the loop next runs inside granian, once it serves: only then may its stop signal be set
    loop.call_soon(serving.set)
    gc.collect()
    gc.freeze()  # as in the single process: start-up objects stay out of every later collection
    log.info("worker %d ready", os.getpid())


def _share_state(app: App, loop: asyncio.AbstractEventLoop) -> None:
    """Link this worker's in-process state to the other workers' (see ``state/peers.py``)."""
    from .state.memory import MemoryState
    from .state.peers import Peers

    fds, index = os.environ.get(PEERS_ENV), os.environ.get(WORKER_INDEX_ENV)
    state = app.gateway.state
    if not fds or index is None or not isinstance(state, MemoryState):
        return
    try:
        peers = Peers(fds, int(index))
    except (OSError, ValueError, IndexError) as exc:
        log.warning("worker %d: cannot share state with the other workers (%s): its bindings and "
                    "cooldowns are its own", os.getpid(), exc)
        return
    state.peers = peers
    peers.start(loop, state.apply_peer)


async def _recheck(path: Path, app: App) -> None:
    """A change written while this worker was starting (after it read the file, before its
    watcher began) is applied once the watcher runs."""
    from .reload import reload_once

    await asyncio.sleep(1.0)
    await reload_once(path, app)


async def _drain_then_stop(app: App, serving: asyncio.Event) -> None:
    try:
        app.begin_drain()
        await app.drain(app.gateway.settings.shutdown_timeout)
    except Exception:
        log.exception("draining failed; stopping anyway")
    await serving.wait()
    _granian_stop[0].set()


def stop(app: App, loop: asyncio.AbstractEventLoop) -> None:
    """From ``App.__rsgi_del__`` in a worker, after granian stopped serving."""
    for task in _tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.gather(*_tasks, return_exceptions=True))
    state = app.gateway.state
    peers = getattr(state, "peers", None)
    if peers is not None:
        peers.flush()
        peers.close()
        state.peers = None  # type: ignore[attr-defined]
    loop.run_until_complete(app.gateway.stop())
