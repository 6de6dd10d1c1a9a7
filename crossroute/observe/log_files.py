"""The request-log folder: file names, the writer thread, and the size and count bounds.

Every file operation runs on one writer thread (``LogWriter``) fed by a bounded queue: the gateway's
loop only appends. Bodies of a call in flight are appended to a spool file in ``<logs-dir>/.spool``
as they come (never held in memory beyond the queue), and the finished log is written next to the
others by an atomic rename. ``error-logs-max-files`` keeps the newest error logs;
``logs-max-total-size-mb`` bounds the folder by removing the oldest request logs, then error logs.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["LogWriter", "file_name", "is_log_name", "sanitise_path"]

log = logging.getLogger("crossroute.observe")

MAX_QUEUE_BYTES = 64 * 1024 * 1024  # bytes waiting for the writer; beyond it, data is dropped (counted)
MAX_QUEUE_ITEMS = 50_000
_UNSAFE = re.compile(r"[/:<>\"|?*\s\\]+")
_DASHES = re.compile(r"-{2,}")
_NAME = re.compile(r"^(error-)?[A-Za-z0-9._-]+\.log$")


def sanitise_path(path: str) -> str:
    s = _DASHES.sub("-", _UNSAFE.sub("-", path)).strip("-")
    return s[:80] or "root"


def file_name(path: str, wall: float, request_id: str, error: bool) -> str:
    stamp = time.strftime("%Y-%m-%dT%H%M%S", time.gmtime(wall))
    name = f"{sanitise_path(path)}-{stamp}-{request_id}.log"
    return f"error-{name}" if error else name


def is_log_name(name: str) -> bool:
    return bool(_NAME.match(name)) and ".." not in name


class LogWriter:
    """One thread doing all the folder's I/O, in the order the jobs were queued."""

    def __init__(self, folder: str, max_error_files: int, max_total_bytes: int) -> None:
        self.folder = Path(os.path.expanduser(folder))
        self.spool_dir = self.folder / ".spool"
        self.max_error_files = max_error_files
        self.max_total_bytes = max_total_bytes
        self.dropped = 0  # jobs dropped: the queue was full or the folder unwritable
        self.written = 0
        self._jobs: deque[tuple[Callable[..., None], tuple[Any, ...], int]] = deque()
        # bytes queued and written: each counter is written by one thread only, so none loses an update
        self._bytes_in = 0
        self._bytes_out = 0
        self._cv = threading.Condition()
        self._stopping = False
        self._files: dict[str, BinaryIO] = {}  # open spool files by spool name
        self._request_logs: deque[tuple[str, int]] = deque()  # (name, size), oldest first
        self._error_logs: deque[tuple[str, int]] = deque()
        self._total = 0
        self._last_log = 0.0
        self._thread = threading.Thread(target=self._run, name="crossroute-request-log", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- any thread
    def put(self, fn: Callable[..., None], *args: Any, size: int = 0) -> bool:
        """Queue ``fn(*args)`` for the writer thread; False (and counted) when the queue is full."""
        waiting = self._bytes_in - self._bytes_out
        if self._stopping or len(self._jobs) >= MAX_QUEUE_ITEMS or waiting + size > MAX_QUEUE_BYTES:
            self.dropped += 1
            return False
        self._bytes_in += size
        self._jobs.append((fn, args, size))
        if len(self._jobs) == 1:
            with self._cv:
                self._cv.notify()
        return True

    def set_limits(self, max_error_files: int, max_total_bytes: int) -> None:
        self.put(self._set_limits, max_error_files, max_total_bytes)

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        done = threading.Event()
        if self.put(done.set):
            done.wait(timeout)

    # ---------------------------------------------------------------- writer thread
    def _run(self) -> None:
        try:
            self._scan()
        except OSError as exc:
            log.warning("request log: cannot read %s: %s", self.folder, exc)
        jobs = self._jobs
        while True:
            with self._cv:
                while not jobs and not self._stopping:
                    self._cv.wait(1.0)
            while jobs:
                fn, args, size = jobs.popleft()
                self._bytes_out += size
                try:
                    fn(*args)
                except OSError as exc:
                    self.dropped += 1
                    self._warn(f"request log: writing failed: {exc}")
                except Exception:
                    self.dropped += 1
                    log.exception("request log: writing failed")
            if self._stopping:
                break
        for f in self._files.values():
            f.close()
        self._files.clear()

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= 60.0:
            self._last_log = now
            log.warning("%s (%d dropped in all)", message, self.dropped)

    def _set_limits(self, max_error_files: int, max_total_bytes: int) -> None:
        self.max_error_files, self.max_total_bytes = max_error_files, max_total_bytes
        self._prune()

    def _scan(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.spool_dir.exists():  # spools of a process that died: nothing will finish them
            shutil.rmtree(self.spool_dir, ignore_errors=True)
        found: list[tuple[float, str, int]] = []
        total = 0
        for entry in os.scandir(self.folder):
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat()
            total += st.st_size
            if is_log_name(entry.name):
                found.append((st.st_mtime, entry.name, st.st_size))
        found.sort()
        for _, name, size in found:
            (self._error_logs if name.startswith("error-") else self._request_logs).append((name, size))
        self._total = total
        self._prune()

    def spool_append(self, spool: str, data: bytes) -> None:
        f = self._files.get(spool)
        if f is None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            f = self._files[spool] = open(self.spool_dir / spool, "ab")  # kept open until finish()
        f.write(data)

    def finish(self, name: str, head: bytes, spool: str | None, tail: bytes) -> None:
        """Write ``head``, the spool's content and ``tail`` as the log ``name`` (atomically)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "wb") as out:
            out.write(head)
            if spool is not None:
                f = self._files.pop(spool, None)
                if f is not None:
                    f.close()
                path = self.spool_dir / spool
                if path.exists():
                    with open(path, "rb") as src:
                        shutil.copyfileobj(src, out, 1024 * 1024)
                    path.unlink()
            out.write(tail)
            size = out.tell()
        os.replace(tmp, self.folder / name)
        self.written += 1
        self._total += size
        (self._error_logs if name.startswith("error-") else self._request_logs).append((name, size))
        self._prune()

    def discard(self, spool: str) -> None:
        f = self._files.pop(spool, None)
        if f is not None:
            f.close()
        try:
            (self.spool_dir / spool).unlink()
        except FileNotFoundError:
            pass

    def _remove(self, name: str, size: int) -> None:
        try:
            (self.folder / name).unlink()
        except FileNotFoundError:
            pass
        self._total -= size

    def _prune(self) -> None:
        errors = self._error_logs
        while len(errors) > self.max_error_files:
            self._remove(*errors.popleft())
        cap = self.max_total_bytes
        if cap <= 0 or self._total <= cap:
            return
        goal = cap * 0.9
        for queue in (self._request_logs, self._error_logs):
            while queue and self._total > goal:
                self._remove(*queue.popleft())

    def names(self) -> list[str]:
        """The logs the writer knows of, newest first (a snapshot; read from any thread)."""
        return [n for n, _ in reversed(list(self._request_logs) + list(self._error_logs))]

    def forget(self, names: set[str]) -> None:
        def go() -> None:
            for queue in (self._request_logs, self._error_logs):
                keep = [(n, s) for n, s in queue if n not in names]
                for n, s in queue:
                    if n in names:
                        self._remove(n, s)
                queue.clear()
                queue.extend(keep)

        self.put(go)
