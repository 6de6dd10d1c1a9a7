"""Backpressure for streamed replies: make a long stream wait for a slow client.

granian's RSGI stream transport (``response_stream().send_bytes``) puts every chunk on an
unbounded channel and resolves at once, whatever the client reads: a client reading at 20 KB/s
made the gateway hold the whole upstream answer in memory. RSGI gives no way to see that queue.

The kernel does: ``TCP_INFO`` on the client's socket says how many bytes the client has
acknowledged. Once a stream has written ``WATCH_AFTER`` bytes (LLM streams rarely do), this finds
the connection's socket by its addresses among the process's descriptors (a duplicate, closed
with the stream), and from then on the writer waits while more than ``HIGH`` bytes are written but
not yet acknowledged, until at most ``LOW`` are. The writer is the task reading the upstream, so
the upstream read waits too (aiohttp stops reading its socket when its buffer is full). A client
that acknowledges nothing for the idle timeout is dropped (the upstream request is closed).

The count of written bytes includes HTTP/1.1 chunk framing (hyper writes each chunk as
``<hex size>\\r\\n<data>\\r\\n``). When the count drifts (an HTTP/2 connection frames differently),
a kernel send queue that stays empty while nothing new is acknowledged means everything written
has left: the count starts again from zero, so a wrong estimate can slow a stream, never stall it.
Only Linux has ``TCP_INFO`` with these fields; elsewhere streams are written as before.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys

WATCH_AFTER = 1 << 20  # bytes of one stream written before the client's pace is watched
HIGH = 2 << 20  # wait when this many bytes are written but not acknowledged by the client
LOW = 1 << 20  # ... until no more than this many are
_POLL_MIN = 0.002
_POLL_MAX = 0.05
_TCP_INFO_LEN = 152  # through tcpi_notsent_bytes
_UNACKED = struct.Struct("=I")  # tcpi_unacked (segments) at offset 24
_ACKED = struct.Struct("=Q")  # tcpi_bytes_acked at offset 120
_NOTSENT = struct.Struct("=I")  # tcpi_notsent_bytes at offset 144


def _split(addr: str) -> tuple[str, int] | None:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _find_socket(local: str, peer: str) -> socket.socket | None:
    """A duplicate of the connected socket with these ``host:port`` ends, or None."""
    want_local, want_peer = _split(local), _split(peer)
    if want_local is None or want_peer is None:
        return None
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for name in names:
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            fd = os.dup(int(name))
        except (OSError, ValueError):
            continue
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            continue
        try:
            if (sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6)
                    and _same(sock.getpeername(), want_peer) and _same(sock.getsockname(), want_local)):
                return sock
        except OSError:
            pass
        sock.close()
    return None


def _same(addr: tuple[object, ...], want: tuple[str, int]) -> bool:
    host, port = str(addr[0]), int(addr[1])  # type: ignore[call-overload]
    if port != want[1]:
        return False
    return host == want[0] or host.removeprefix("::ffff:") == want[0].removeprefix("::ffff:")


class ClientFlow:
    """The client connection's pace, for one stream. ``behind(n)`` after each write of ``n``
    bytes; when it is true, ``await wait()``."""

    __slots__ = ("_acked", "_sock", "pending")

    def __init__(self, sock: socket.socket | None, written: int) -> None:
        self._sock = sock
        # everything written so far may still be unacknowledged: start from the worst case
        self.pending = written
        self._acked = 0
        if sock is not None:
            info = self._info()
            if info is None:
                self.close()
            else:
                self._acked = info[0]

    @classmethod
    def open(cls, scope: object, written: int) -> ClientFlow:
        sock = None
        if sys.platform.startswith("linux"):
            sock = _find_socket(getattr(scope, "server", ""), getattr(scope, "client", ""))
        return cls(sock, written)

    @property
    def active(self) -> bool:
        return self._sock is not None

    def behind(self, n: int) -> bool:
        if self._sock is None:
            return False
        # hyper's chunked framing: hex size, CRLF, data, CRLF
        self.pending += n + ((n.bit_length() + 3) >> 2 or 1) + 4
        return self.pending > HIGH

    def _info(self) -> tuple[int, int, int] | None:
        assert self._sock is not None
        try:
            raw = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except OSError:
            return None
        if len(raw) < _TCP_INFO_LEN:
            return None
        return _ACKED.unpack_from(raw, 120)[0], _UNACKED.unpack_from(raw, 24)[0], _NOTSENT.unpack_from(raw, 144)[0]

    async def wait(self, stall: float) -> bool:
        """Until no more than ``LOW`` written bytes are unacknowledged (or the socket is gone):
        True. False when the client acknowledged nothing for ``stall`` seconds (drop it)."""
        loop = asyncio.get_running_loop()
        delay = _POLL_MIN
        idle = 0
        last_progress = loop.time()
        while self._sock is not None:
            info = self._info()
            if info is None:  # the connection is gone: the disconnect handling ends the stream
                self.close()
                return True
            acked, unacked, notsent = info
            progress = acked - self._acked
            self._acked = acked
            self.pending -= progress
            if self.pending <= LOW:
                return True
            if progress:
                delay, idle = _POLL_MIN, 0
                last_progress = loop.time()
            elif unacked == 0 and notsent == 0:
                idle += 1
                if idle >= 3:  # nothing in the kernel and nothing moving: all written has left
                    self.pending = 0
                    return True
            elif loop.time() - last_progress > stall:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
