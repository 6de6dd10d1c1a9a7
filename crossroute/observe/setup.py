"""Which observers a gateway has, from its settings (called at start and on every reload).

- ``usage``: the usage store, with ``usage-statistics-enabled: true`` (a new one when the database
  URL or the data directory changes).
- ``request_log``: request logs with ``request-log: true``; else error logs of failed requests
  unless ``error-logs-max-files: 0``.
- ``traces``: the recent calls' routing traces, with ``request-log: true`` or the management API
  enabled (``Hub.tracing`` then makes every call traced).
- ``metrics``: made by the first ``GET /metrics`` (``api/metrics.py``) and kept from then on.

Observers taken out by a reload are stopped in the background; all are stopped with the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["install", "management_enabled", "put"]

log = logging.getLogger("crossroute.observe")
_stopping: set[asyncio.Task[None]] = set()
_ORDER = ("metrics", "traces", "request_log", "usage")


def management_enabled(gw: Gateway) -> bool:
    return bool(gw.settings.remote_management.secret_key or os.environ.get("MANAGEMENT_PASSWORD"))


class _Life:
    """Gateway component: stops the observers with the gateway."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def reconfigure(self, gw: Gateway, removed: set[str]) -> None:
        return None

    async def stop(self) -> None:
        hub = self.gw.observers
        for name in list(hub.named):
            await _stop(put(self.gw, name, None))


async def _stop(obs: Any) -> None:
    stop = getattr(obs, "stop", None)
    if stop is not None:
        try:
            await stop()
        except Exception:
            log.exception("stopping observer %s failed", type(obs).__name__)


def put(gw: Gateway, name: str, obs: Any, *, failures_only: bool = False) -> Any:
    """Make ``obs`` the hub's observer called ``name`` (None: remove it); the one it replaced.
    ``failures_only``: it is told only of calls that failed (see ``Hub.failures``)."""
    hub = gw.observers
    old = hub.named.pop(name, None)
    if old is not None and old is not obs:
        hub.remove(old)
    if obs is not None:
        hub.named[name] = obs
        hub.add(obs, failures_only=failures_only)
        # metrics first: it reads call.usage on the loop (parsing a passed-through answer once and
        # keeping the result on the call), so the usage store's thread finds it parsed
        mine = [hub.named[n] for n in _ORDER if n in hub.named and any(o is hub.named[n] for o in hub.observers)]
        hub.observers[:] = mine + [o for o in hub.observers if not any(o is m for m in mine)]
    return old if old is not obs else None


def _stop_later(obs: Any) -> None:
    if obs is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(_stop(obs))
    _stopping.add(task)
    task.add_done_callback(_stopping.discard)


def install(gw: Gateway) -> None:
    """Add, keep or remove the observers the settings ask for."""
    from ..usage.store import UsageStore
    from .request_log import RequestLog
    from .traces import TraceRing

    s = gw.settings
    hub = gw.observers
    gw.component("observers", _Life)

    store = hub.named.get("usage")
    if s.usage_statistics_enabled:
        if store is None or (store.url, store.data_dir) != (s.usage_database_url, s.data_dir):
            _stop_later(put(gw, "usage", UsageStore(gw)))
        else:
            store.reconfigure(gw, set())
    elif store is not None:
        _stop_later(put(gw, "usage", None))

    rlog = hub.named.get("request_log")
    if s.request_log or s.error_logs_max_files > 0:
        if rlog is None or rlog.folder != s.logs_dir:
            rlog = RequestLog(gw)
            _stop_later(put(gw, "request_log", rlog, failures_only=not s.request_log))
        else:
            rlog.configure(gw)
            put(gw, "request_log", rlog, failures_only=not s.request_log)
        hub.spool = rlog.spool if s.request_log else None
    else:
        hub.spool = None
        if rlog is not None:
            _stop_later(put(gw, "request_log", None))

    want_traces = s.request_log or management_enabled(gw)
    if want_traces and "traces" not in hub.named:
        put(gw, "traces", TraceRing())
    elif not want_traces and "traces" in hub.named:
        put(gw, "traces", None)
    hub.tracing = want_traces

    metrics = hub.named.get("metrics")
    if metrics is not None:
        metrics.reconfigure(gw, set())
