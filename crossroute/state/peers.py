"""Sharing in-process state between the worker processes of one ``crossroute serve --workers N``.

Each worker keeps its full ``MemoryState`` (reads never leave the process) and tells the other
workers of every change — a session bound or re-bound, a binding dropped, a cooldown set or
cleared (one, or every one of a credential), a quota reading — over Unix datagram socket pairs
the parent made before forking them (nothing is reachable from outside the process tree). The
changes of one event-loop pass go out as one datagram per peer, sent without waiting; a receiver
applies them when its loop next runs. Conflicts (two workers binding the same new session at
once) resolve the same way in every worker: the binding that expires later wins. A datagram that
cannot be sent at once (a peer's buffer full) is dropped and counted: a session may then be
placed anew, nothing worse.
Round-robin cursors stay per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import orjson

log = logging.getLogger("crossroute")

_BATCH = 128  # operations per datagram at most (a few KB with ordinary session ids)


def make_links(count: int) -> list[tuple[socket.socket, socket.socket]]:
    """In the parent, before forking: one (receive, send) datagram pair per worker."""
    links = []
    for _ in range(count):
        rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (rx, tx):
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF if sock is tx else socket.SO_RCVBUF,
                                4 * 1024 * 1024)
        links.append((rx, tx))
    return links


def links_env(links: list[tuple[socket.socket, socket.socket]]) -> str:
    return ";".join(f"{rx.fileno()},{tx.fileno()}" for rx, tx in links)


class Peers:
    """The link of one worker to the others; ``send`` queues an operation for all of them."""

    def __init__(self, fds: str, index: int) -> None:
        """``fds``: ``links_env`` of the parent; ``index``: this worker's place in it."""
        pairs = [tuple(int(x) for x in part.split(",")) for part in fds.split(";")]
        self.index = index
        self.sent = 0
        self.dropped = 0
        self.received = 0
        self._sock = socket.socket(fileno=pairs[index][0])
        self._to = [socket.socket(fileno=tx) for i, (_, tx) in enumerate(pairs) if i != index]
        for i, (rx, _) in enumerate(pairs):
            if i != index:
                with contextlib.suppress(OSError):
                    socket.socket(fileno=rx).close()  # another worker's inbox: not ours to read
        with contextlib.suppress(OSError):
            socket.socket(fileno=pairs[index][1]).close()  # our own outbox: nobody here sends to us
        self._out: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._apply: Callable[[list[Any]], None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, apply: Callable[[list[Any]], None]) -> None:
        self._loop = loop
        self._apply = apply
        loop.add_reader(self._sock.fileno(), self._read)

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for tx in self._to:
            tx.close()

    def send(self, op: list[Any]) -> None:
        loop = self._loop
        if loop is None:
            return
        out = self._out
        if not out:
            loop.call_soon(self.flush)
        out.append(op)
        if len(out) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        out = self._out
        if not out:
            return
        self._out = []
        data = orjson.dumps(out)
        for tx in self._to:
            try:
                tx.send(data)
                self.sent += 1
            except OSError:  # peer not there (yet), its buffer full, datagram too large
                self.dropped += 1

    def _read(self) -> None:
        apply = self._apply
        assert apply is not None
        for _ in range(64):  # then let the loop run requests again
            try:
                data = self._sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                ops = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            self.received += 1
            for op in ops:
                try:
                    apply(op)
                except Exception:  # a malformed operation is skipped, never fatal
                    log.debug("state from a peer worker skipped: %r", op)
