"""The access log: one INFO line per request on the ``crossroute.access`` logger.

A ``logging`` call costs ~45 µs per line here (a LogRecord, the time format, the secret scrub
of the whole line, a write and a flush), a fifth of a whole request. So when the logger ends in
the stock stderr handler of ``logs.setup_logging`` (the normal case), the line is built here in
the same layout and written in batches: appended to a buffer, written with one ``write`` per
``FLUSH_AFTER`` second (or every ``MAX_LINES`` lines), under the handler's lock, by one timer that
runs while lines come (a timer per line would cost more than the line). Any other set-up
(an added handler, a test's log capture) gets an ordinary ``logger.info`` per request.

What a line holds: method, path (never the query string, which may hold ``?key=``), status,
client format, model, credential id (a hash, never a key), latency. The path and model come
from the client; each distinct value is scrubbed once (known secrets, key-like text, control
characters) and cached.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
from typing import IO, Any

from .logs import scrub_line

access_log = logging.getLogger("crossroute.access")

FLUSH_AFTER = 1.0  # seconds a line may wait in the buffer
MAX_LINES = 256
_MAX_FIELD = 200
_CACHE_SIZE = 4096
_MILLIS = [*(f"{i:03d}" for i in range(1000)), "999"]  # (a float product may round up to 1000)
_PARTS = 5  # strings per line in the buffer
_MAX_TENTHS = 10_000  # latencies under 1 s come from a table
_TENTHS = [f"{i // 10}.{i % 10}" for i in range(_MAX_TENTHS)]


class AccessLog:
    __slots__ = ("_buffer", "_clean", "_handler", "_middles", "_scheduled", "_second", "_stamp", "enabled")

    def __init__(self) -> None:
        self.enabled = False
        self._buffer: list[str] = []
        self._clean: dict[str, str] = {}
        self._middles: dict[tuple[str, str, int, str, str | None, str | None], str] = {}
        self._handler: logging.StreamHandler[IO[str]] | None = None
        self._scheduled = False
        self._second = -1
        self._stamp = ""
        atexit.register(self.flush)

    def configure(self, on: bool) -> None:
        """On with the setting ``access-log`` and the logger enabled for INFO."""
        self.flush()
        self.enabled = bool(on) and access_log.isEnabledFor(logging.INFO)
        self._handler = _stock_handler() if self.enabled else None
        self._clean = {}  # the known secrets may have changed
        self._middles = {}

    def line(self, method: str, path: str, status: int, fmt: str, model: str | None, credential: str | None,
             started: float) -> None:
        tenths = int((time.perf_counter() - started) * 10_000)  # latency in tenths of a millisecond
        if self._handler is None:
            clean = self._clean
            path = clean.get(path) or self._safe(path)
            model = (clean.get(model) or self._safe(model)) if model else "-"
            access_log.info("%s %s %d %s model=%s credential=%s %d.%dms", method, path, status, fmt, model,
                            credential or "-", tenths // 10, tenths % 10)
            return
        # everything between the timestamp and the latency, cleaned and formatted once per distinct request kind
        key = (method, path, status, fmt, model, credential)
        middle = self._middles.get(key)
        if middle is None:
            middle = self._middle(key)
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S,", time.localtime(second))
        # (integers only, from tables where possible: formatting a float costs more than the rest of the
        # line; the parts are joined by flush, not here)
        buffer = self._buffer
        buffer += (self._stamp, _MILLIS[int((now - second) * 1000)], middle,
                   _TENTHS[tenths] if tenths < _MAX_TENTHS else f"{tenths // 10}.{tenths % 10}", "ms\n")
        if len(buffer) >= MAX_LINES * _PARTS:
            self.flush()
        elif not self._scheduled:  # one timer per second while lines come, not one per line
            try:
                asyncio.get_running_loop().call_later(FLUSH_AFTER, self._tick)
                self._scheduled = True
            except RuntimeError:  # no loop: write now
                self.flush()

    def _middle(self, key: tuple[str, str, int, str, str | None, str | None]) -> str:
        method, path, status, fmt, model, credential = key
        middle = (f" INFO crossroute.access: {method} {self._safe(path)} {status} {fmt} "
                  f"model={self._safe(model) if model else '-'} credential={credential or '-'} ")
        if len(self._middles) < _CACHE_SIZE:
            self._middles[key] = middle
        return middle

    def _tick(self) -> None:
        if not self._buffer:
            self._scheduled = False  # idle: the next line starts the timer again
            return
        self.flush()
        try:
            asyncio.get_running_loop().call_later(FLUSH_AFTER, self._tick)
        except RuntimeError:
            self._scheduled = False

    def _safe(self, value: str) -> str:
        known = self._clean.get(value)
        if known is None:
            known = value[:_MAX_FIELD] + ("..." if len(value) > _MAX_FIELD else "")
            if not known.isprintable():
                known = known.encode("unicode_escape").decode("ascii")
            known = scrub_line(known)
            if len(self._clean) < _CACHE_SIZE:
                self._clean[value] = known
        return known

    def flush(self) -> None:
        if not self._buffer:
            return
        text = "".join(self._buffer)
        self._buffer.clear()
        handler = self._handler
        if handler is None:
            for line in text.splitlines():
                access_log.info("%s", line)
            return
        handler.acquire()
        try:
            stream = handler.stream
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):  # not a file (a test's StringIO)
                stream.write(text)
                stream.flush()
            else:  # the handler flushes after each record: nothing of its own is buffered
                data = text.encode("utf-8", "backslashreplace")
                while data:
                    data = data[os.write(fd, data):]
        except (OSError, ValueError):
            pass
        finally:
            handler.release()


def _stock_handler() -> logging.StreamHandler[IO[str]] | None:
    """The stream handler every access line ends in, when that is the stock set-up (the
    ``crossroute`` logger's one handler from setup_logging, nothing added below it)."""
    logger: Any = access_log
    handlers: list[logging.Handler] = []
    while logger is not None:
        if logger.filters:
            return None
        handlers.extend(logger.handlers)
        if not logger.propagate:
            break
        logger = logger.parent
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if type(handler) is not logging.StreamHandler or handler.filters or handler.level > logging.INFO:
        return None
    if type(handler.formatter).__name__ != "_RedactingFormatter":
        return None
    return handler
