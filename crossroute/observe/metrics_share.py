"""``GET /metrics`` for the whole server under ``crossroute serve --workers N``.

Each worker counts its own calls (observe/metrics.py). Once a second, a worker that counts writes
a snapshot of its counts and gauges to ``worker-<index>.json`` in a directory private to this
server (mode 0700: ``$CROSSROUTE_METRICS_DIR`` when the parent sets it, else one under the temp
directory named for the user, the parent's pid and its start time). The worker that answers a
scrape reads the other workers' files (in a thread) and adds them to its own live counts, so
the counters are the server's sums and dashboards need no ``worker`` label. The other workers'
share is at most about a second old.

- Counting starts at the first scrape, in every worker: the scraped worker leaves a ``counting``
  file there, which the others see within a second.
- A worker that granian starts again in the place of one that died carries on from its
  predecessor's last snapshot, so the sums never go down. The active-stream and WebSocket gauges
  and the usage queue are summed over the snapshots of the last ``FRESH`` seconds only.
- Cooldowns, bindings and quota are read from the worker's own state at scrape time: the workers
  share them (state/peers.py, or Redis), so they are not summed.
- Bounded: one small file per worker (``MAX_FILE`` bytes at most are read), written in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .metrics import Metrics
from .metrics_state import local_gauges
from .setup import put

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["DIR_ENV", "Share", "enable", "join"]

log = logging.getLogger("crossroute.observe")

DIR_ENV = "CROSSROUTE_METRICS_DIR"
INDEX_ENV = "CROSSROUTE_WORKER_INDEX"  # set by serve.py for each worker
PUBLISH_EVERY = 1.0
FRESH = 5.0  # seconds a worker's gauges count after its last snapshot
MAX_FILE = 8 * 1024 * 1024
MARKER = "counting"
# gauges that only go up (summed from every snapshot, a dead worker's last one too)
_MONOTONIC = ("usage_written", "dropped_usage", "dropped_request_log")

COMPONENT = "metrics_share"  # the gateway component (stopped with the gateway)


def enable(gw: Gateway) -> Metrics:
    """The gateway's metrics observer, made (and counting from now on) at the first call; in a
    worker that ``join``\\ ed, it also adds the other workers' counts to what it serves."""
    m: Metrics | None = gw.observers.named.get("metrics")
    if m is None:
        m = Metrics(gw)
        put(gw, "metrics", m)
        share: Share | None = gw.find_component(COMPONENT)
        if share is not None:
            share.attach(m)
    return m


def join(gw: Gateway, loop: asyncio.AbstractEventLoop | None = None) -> Share | None:
    """In a worker of ``crossroute serve --workers N`` (``CROSSROUTE_WORKER_INDEX`` set): publish
    this worker's counts for the others and read theirs at scrape time. Once per gateway; None
    outside a worker or when the directory cannot be made private."""
    found: Share | None = gw.find_component(COMPONENT)
    if found is not None:
        return found
    index = os.environ.get(INDEX_ENV)
    if index is None or not index.isdigit():
        return None
    folder = _folder()
    if folder is None:
        return None
    share = gw.component(COMPONENT, lambda g: Share(g, folder, int(index)))
    share.start(loop or asyncio.get_running_loop())
    return share


def _parent_start(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot; "" where /proc has no such)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return fields[19]
    except (OSError, IndexError):
        return ""


def _folder() -> Path | None:
    given = os.environ.get(DIR_ENV)
    if given:
        folder = Path(given)
    else:
        ppid = os.getppid()
        uid = os.getuid() if hasattr(os, "getuid") else 0
        folder = Path(tempfile.gettempdir()) / f"crossroute-metrics-{uid}-{ppid}-{_parent_start(ppid)}"
    try:
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        st = folder.lstat()
    except OSError as exc:
        log.warning("metrics of the other workers unavailable: %s: %s", folder, exc)
        return None
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()) or (
            stat.S_IMODE(st.st_mode) & 0o077):
        log.warning("metrics of the other workers unavailable: %s is not a private directory of this user", folder)
        return None
    return folder


class Share:
    """One worker's link to the others' metrics (see the module docstring)."""

    def __init__(self, gw: Gateway, folder: Path, index: int) -> None:
        self.gw = gw
        self.folder = folder
        self.index = index
        self.path = folder / f"worker-{index}.json"
        self._others: list[dict[str, Any]] = []
        self._base: dict[str, Any] | None = None  # a predecessor's last snapshot
        self._task: asyncio.Task[None] | None = None
        self.metrics: Metrics | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._base = _read(self.path)  # a worker of this index that ran before this one
        self._task = loop.create_task(self._run(), name="crossroute-metrics-share")

    def attach(self, m: Metrics) -> None:
        self.metrics = m
        m.workers = self
        base = self._base
        if base is not None and isinstance(base.get("counts"), dict):
            m.counts.add(base["counts"])

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_EVERY)
            try:
                await self.tick()
            except Exception:
                log.exception("publishing this worker's metrics failed")

    async def tick(self) -> None:
        m = self.metrics
        if m is None:
            if not await asyncio.to_thread((self.folder / MARKER).exists):
                return
            m = enable(self.gw)
        data = orjson.dumps(self.snapshot(m))
        await asyncio.to_thread(_write, self.path, data)

    def snapshot(self, m: Metrics) -> dict[str, Any]:
        gauges = local_gauges(self.gw)
        base = (self._base or {}).get("gauges")
        if isinstance(base, dict):
            for name in _MONOTONIC:
                if isinstance(base.get(name), int | float):
                    gauges[name] = gauges.get(name, 0) + base[name]
        return {"pid": os.getpid(), "counts": m.settle().snapshot(), "gauges": gauges}

    async def counting(self) -> None:
        """At a scrape: tell the other workers to count (once), and read their snapshots."""
        marker = self.folder / MARKER
        self._others = await asyncio.to_thread(self._read_others, marker)

    def _read_others(self, marker: Path) -> list[dict[str, Any]]:
        if not marker.exists():
            _write(marker, b"")
        now = time.time()
        out = []
        for path in sorted(self.folder.glob("worker-*.json")):
            if path.name == self.path.name:
                continue
            snap = _read(path)
            if snap is None:
                continue
            with contextlib.suppress(OSError):
                snap["fresh"] = now - path.stat().st_mtime <= FRESH
            out.append(snap)
        return out

    def others(self) -> list[dict[str, Any]]:
        """The other workers' counts, as read at this scrape."""
        return [s["counts"] for s in self._others if isinstance(s.get("counts"), dict)]

    def gauges(self) -> dict[str, float]:
        """The other workers' gauges summed (the changing ones from fresh snapshots only), and the
        counting ones of this worker's predecessor."""
        total: dict[str, float] = {}
        base = (self._base or {}).get("gauges")
        if isinstance(base, dict):
            for name in _MONOTONIC:
                if isinstance(base.get(name), int | float):
                    total[name] = base[name]
        for snap in self._others:
            gauges = snap.get("gauges")
            if not isinstance(gauges, dict):
                continue
            for name, value in gauges.items():
                if isinstance(value, int | float) and (snap.get("fresh") or name in _MONOTONIC):
                    total[name] = total.get(name, 0) + value
        return total

    def reconfigure(self, gw: Gateway, removed: set[str]) -> None:
        self.gw = gw

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE + 1)
        if len(data) > MAX_FILE:
            return None
        snap = orjson.loads(data)
    except (OSError, orjson.JSONDecodeError):
        return None
    return snap if isinstance(snap, dict) else None


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (no fsync: a snapshot lost to a power cut is made again)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
