"""Writing a streamed reply to the client: at the client's pace (edge_flow.py), cancelled at once
when the client goes away, ended with the format's terminal error event on shutdown.

A client that goes away is seen two ways: a write that fails, and granian's
``proto.client_disconnect()``, which resolves when the connection closes even while the upstream
is silent (a model thinking for a minute). Waiting on the latter costs a future and a watcher in
granian's runtime per stream (about two more thread wake-ups per stream, measured with
``/proc/<pid>/task/*/status`` context-switch counts under ``bench/run.py``'s stream load), so a
stream is only watched once it has lasted ``WATCH_DISCONNECT_AFTER`` seconds: one timer for all
streams arms the watch of those older than that. Shorter streams end on their own or at the next
failed write; a client gone while the upstream is silent is noticed within that delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .edge_flow import WATCH_AFTER, ClientFlow
from .formats import errors
from .replies import StreamReply

__all__ = ["SHUTDOWN_MESSAGE", "WATCH_DISCONNECT_AFTER", "DisconnectWatch", "StreamState", "stream_terminal",
           "write_stream"]

log = logging.getLogger("crossroute")

SHUTDOWN_MESSAGE = "crossroute is shutting down; retry the request"
WATCH_DISCONNECT_AFTER = 0.25  # s a stream runs before granian is asked to report the client leaving


def stream_terminal(reply: StreamReply, fmt: str, status: int, message: str) -> bytes | None:
    """The bytes that end ``reply``'s stream with an error in the client's format, or None when
    the format has no such event known here (the stream is then just closed)."""
    if reply.terminal is not None:
        return reply.terminal(status, message)
    if fmt == "claude":
        return errors.claude_stream_error(status, message)
    if fmt == "gemini":
        return errors.gemini_stream_error(status, message)
    if fmt == "openai":
        return errors.openai_stream_error(status, message)
    return None


class StreamState:
    """One stream being written, as ``drain`` and the disconnect watch see it."""

    __slots__ = ("ending", "gone", "proto", "started", "task", "writing")

    def __init__(self, task: asyncio.Task[Any] | None, proto: Any) -> None:
        self.task = task
        self.proto = proto
        self.writing = True
        self.ending = False
        self.started = time.monotonic()
        self.gone: asyncio.Future[Any] | None = None  # granian's client_disconnect(), once armed

    def arm(self) -> None:
        """Ask granian to report the client leaving; it then cancels the writing task."""
        if self.gone is not None or not self.writing:
            return
        try:
            self.gone = asyncio.ensure_future(self.proto.client_disconnect())
        except Exception as exc:  # no such hook (a test double, an older server): writes still fail
            log.debug("client_disconnect unavailable: %r", exc)
            self.gone = asyncio.get_running_loop().create_future()
            self.gone.cancel()  # armed, never firing
            return
        self.gone.add_done_callback(self._on_gone)

    def _on_gone(self, fut: asyncio.Future[Any]) -> None:
        if self.writing and self.task is not None and not fut.cancelled():
            self.task.cancel()

    def client_left(self) -> bool:
        gone = self.gone
        return gone is not None and gone.done() and not gone.cancelled()

    def disarm(self) -> None:
        self.writing = False
        if (gone := self.gone) is not None:
            gone.remove_done_callback(self._on_gone)
            gone.cancel()


class DisconnectWatch:
    """The streams being written, and one timer for all of them that arms the disconnect watch of
    each stream older than ``after`` seconds. Per stream: a set insert and a discard."""

    __slots__ = ("_handle", "after", "streams")

    def __init__(self, after: float = WATCH_DISCONNECT_AFTER) -> None:
        self.streams: set[StreamState] = set()
        self.after = after
        self._handle: asyncio.TimerHandle | None = None

    def add(self, state: StreamState) -> None:
        self.streams.add(state)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.after, self._check)

    def discard(self, state: StreamState) -> None:
        self.streams.discard(state)

    def _check(self) -> None:
        self._handle = None
        if not self.streams:
            return  # started again by the next stream
        limit = time.monotonic() - self.after
        waiting = False
        for state in list(self.streams):
            if state.gone is None:
                if state.started <= limit:
                    state.arm()
                else:
                    waiting = True
        if waiting:
            self._handle = asyncio.get_running_loop().call_later(self.after, self._check)

    def __len__(self) -> int:
        return len(self.streams)


async def write_stream(proto: Any, scope: Any, reply: StreamReply, fmt: str, watch: DisconnectWatch,
                       idle_timeout: float) -> None:
    """Write the stream from this task at the client's pace; a client that goes away cancels it
    (which closes the upstream response inside the chunk generator); ``drain`` cancels it with
    ``state.ending`` set to end it with the format's terminal error event."""
    transport = proto.response_stream(reply.status, reply.headers)
    send = transport.send_bytes
    chunks = reply.chunks
    me = asyncio.current_task()
    state = StreamState(me, proto)
    watch.add(state)
    written = 0
    flow: ClientFlow | None = None
    clog = reply.call.log if reply.call is not None else None
    try:
        async for chunk in chunks:
            await send(chunk)
            if clog is not None:
                clog.client(chunk)
            written += len(chunk)
            if written > WATCH_AFTER:  # a long stream: from now on, at the client's pace
                if flow is None:
                    flow = ClientFlow.open(scope, written)
                elif flow.behind(len(chunk)) and not await flow.wait(idle_timeout):
                    log.info("stream dropped: the client read nothing for %g s", idle_timeout)
                    break
    except asyncio.CancelledError:
        if state.ending and me is not None:  # drain: end it in the client's format
            me.uncancel()
            state.disarm()
            tail = stream_terminal(reply, fmt, 503, SHUTDOWN_MESSAGE)
            if tail:
                try:
                    await send(tail)
                except Exception as exc:
                    log.debug("stream end not written: %r", exc)
        elif not state.client_left():
            raise  # cancelled from outside: let it propagate
        elif me is not None:
            me.uncancel()  # our own cancellation: the client is gone, nothing left to tell it
    except Exception as exc:  # client gone mid-write: nothing left to tell it
        log.debug("stream ended early: %r", exc)
    finally:
        state.disarm()
        watch.discard(state)
        if flow is not None:
            flow.close()
        await chunks.aclose()  # type: ignore[attr-defined]
