"""The usage store: an observer that queues records and a writer thread that commits them in batches.

Nothing on the request path waits for it. ``call_ended`` builds the call's records (after the reply
was written) and appends them to a bounded queue; the writer thread commits what is queued every
``FLUSH_SECONDS`` (sooner once ``BATCH`` calls wait), one transaction per batch. So a killed
process loses at most the records of the calls that ended in its last ``FLUSH_SECONDS`` (one batch),
more only if the database fell behind (at most ``MAX_QUEUE`` calls, then new records are dropped).
A full queue or a failing database never fails a request. While the database cannot be opened (or
refused a batch once: locked by another process) the records stay queued and the writer tries again;
records are dropped only when the queue is full, a batch is refused twice, or the store stops with
the database still unavailable: counted (``dropped``) and logged at most once a minute.
Queries run on the same thread, after the queued records are committed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import records as _records
from .backends import Backend, open_backend
from .records import FIELDS, clock_offset, rows_of, snapshot

if TYPE_CHECKING:
    from ..call import Attempt, Call
    from ..gateway import Gateway
    from ..observe.events import CallEnded

__all__ = ["BATCH", "FLUSH_SECONDS", "MAX_QUEUE", "UsageStore"]

log = logging.getLogger("crossroute.usage")

FLUSH_SECONDS = 0.5
BATCH = 500
MAX_QUEUE = 10_000
_LOG_EVERY = 60.0
_READY = object()  # marks a queue item of ready-made records
_IN = FIELDS.index("input_tokens")
_REOPEN_AFTER = 5.0  # seconds between attempts to reopen a database that failed


class UsageStore:
    """Observer and gateway component (``reconfigure``/``stop``)."""

    def __init__(self, gw: Gateway, backend: Backend | None = None, *, flush_seconds: float = FLUSH_SECONDS,
                 max_queue: int = MAX_QUEUE) -> None:
        self.gw = gw
        s = gw.settings
        self.url = s.usage_database_url
        self.data_dir = s.data_dir
        self.backend = backend if backend is not None else open_backend(self.url, self.data_dir)
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self.dropped = 0  # records lost: queue full or the database failed
        self.written = 0
        self.failures = 0  # batches the database refused
        self._pending: deque[tuple[Any, ...]] = deque()
        self._jobs: deque[tuple[Callable[[Backend], Any], concurrent.futures.Future[Any]]] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._open = False
        self._last_open_try = 0.0
        self._last_log = 0.0
        self._thread = threading.Thread(target=self._run, name="crossroute-usage", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ observer (the gateway's loop)
    wants_attempts = False  # told of finished calls only (Hub.attempts)

    def attempt_ended(self, call: Call, attempt: Attempt) -> None:
        return None  # records are made once the call ended (its reply written)

    def call_ended(self, event: CallEnded) -> None:
        snap = snapshot(event)  # None: a request that makes no record
        if snap is None:
            return
        pending = self._pending
        if len(pending) >= self.max_queue or self._stopping:
            self._drop(1, "the usage queue is full" if not self._stopping else "the store is stopping")
            return
        pending.append(snap)
        if len(pending) >= BATCH:
            with self._cv:
                self._cv.notify()

    def add(self, records: Sequence[tuple[Any, ...]]) -> None:
        """Queue ready-made records (tuples in ``FIELDS`` order; imports and tests)."""
        pending = self._pending
        if len(pending) >= self.max_queue or self._stopping:
            self._drop(len(records), "the usage queue is full" if not self._stopping else "the store is stopping")
            return
        pending.append((_READY, list(records), 0))
        with self._cv:
            self._cv.notify()

    # ------------------------------------------------------------ component
    def reconfigure(self, gw: Gateway, removed: set[str]) -> None:
        self.gw = gw

    async def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        await asyncio.to_thread(self._thread.join, 10.0)

    def stop_now(self, timeout: float = 10.0) -> None:
        """Stop from a thread that is not the loop (tests, shutdown hooks)."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout)

    # ------------------------------------------------------------ queries (any thread)
    def submit(self, fn: Callable[[Backend], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn(backend)`` on the writer thread once the queued records are committed."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._stopping:
            fut.set_exception(RuntimeError("the usage store is stopped"))
            return fut
        with self._cv:
            self._jobs.append((fn, fut))
            self._cv.notify()
        return fut

    async def run(self, fn: Callable[[Backend], Any], within: float = 30.0) -> Any:
        async with asyncio.timeout(within):
            return await asyncio.wrap_future(self.submit(fn))

    def query(self, sql: str, params: Sequence[Any] = ()) -> concurrent.futures.Future[list[dict[str, Any]]]:
        return self.submit(lambda b: b.query(sql, params))

    @property
    def queued(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------ writer thread
    def _drop(self, n: int, why: str) -> None:
        self.dropped += n
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY:
            self._last_log = now
            log.warning("usage store: %d record(s) dropped (%s); %d dropped in all", n, why, self.dropped)

    def _ensure_open(self) -> bool:
        if self._open:
            return True
        now = time.monotonic()
        if self._last_open_try and now - self._last_open_try < _REOPEN_AFTER:
            return False
        self._last_open_try = now
        try:
            self.backend.open()
        except Exception as exc:
            self.failures += 1
            if now - self._last_log >= _LOG_EVERY:
                self._last_log = now
                log.warning("usage store: cannot open the database: %s", exc)
            return False
        self._open = True
        return True

    def _flush(self) -> None:
        """Commit what is queued. While the database cannot be opened or refuses a batch for the
        first time, the records stay queued (at the front) for the next round: a database locked
        by another worker or briefly missing loses nothing. A batch refused twice is dropped (a
        row the database will never take must not block the queue)."""
        pending = self._pending
        while pending:
            if not self._ensure_open():
                return  # kept; the queue bound (max_queue calls) still holds
            n = min(len(pending), BATCH * 4)
            offset = _records.offset = clock_offset()
            records: list[tuple[Any, ...]] = []
            tries = 0
            for _ in range(n):
                item = pending.popleft()
                if type(item[0]) is float and type(item[_IN]) is int:  # a finished record (``snapshot``)
                    records.append(item)
                elif item[0] is _READY:
                    records.extend(item[1])
                    tries = max(tries, item[2])
                else:
                    try:
                        records.extend(rows_of(item, offset))
                    except Exception:
                        self.dropped += 1
                        log.exception("usage store: a call's records could not be made")
            try:
                self.backend.insert(records)
            except Exception as exc:
                self.failures += 1
                try:
                    self.backend.close()
                except Exception:
                    log.debug("closing the usage database failed", exc_info=True)
                self._open = False
                if tries == 0:
                    pending.appendleft((_READY, records, 1))
                    log.warning("usage store: the database refused a batch of %d (%s); trying again",
                                len(records), exc)
                    return
                self._drop(len(records), f"the database refused them twice: {exc}")
                continue
            self.written += len(records)

    def _run(self) -> None:
        cv = self._cv
        self._ensure_open()  # migrate at start, not at the first record
        while True:
            with cv:
                if not (self._stopping or self._jobs or len(self._pending) >= BATCH):
                    cv.wait(self.flush_seconds)
                stopping = self._stopping
                jobs = list(self._jobs)
                self._jobs.clear()
            try:
                self._flush()
            except Exception:
                log.exception("usage store: writing failed")
            for fn, fut in jobs:
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    if not self._ensure_open():
                        raise RuntimeError("the usage database is not available (see the gateway log)")
                    fut.set_result(fn(self.backend))
                except Exception as exc:
                    fut.set_exception(exc)
            if stopping:
                break
        if self._pending:  # one last try, whatever the reopen delay
            self._last_open_try = 0.0
            try:
                self._flush()
            except Exception:
                log.exception("usage store: writing failed")
        if self._pending:  # the database stayed unavailable to the end
            n = sum(len(it[1]) if it[0] is _READY else 1 for it in self._pending)
            self._pending.clear()
            self._last_log = 0.0
            self._drop(n, "the database was not available when the store stopped")
        for _fn, fut in list(self._jobs):
            fut.set_exception(RuntimeError("the usage store is stopped"))
        try:
            self.backend.close()
        except Exception:
            log.debug("closing the usage database failed", exc_info=True)
