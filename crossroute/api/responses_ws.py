"""The Responses API over WebSocket, downstream: one session loop per accepted connection.

A reader takes the client's frames (JSON, text or binary, at most ``frame_limit`` bytes: a bigger
one gets an ``error`` event and the connection is closed) and queues them by lane: the default
conversation, or one per client ``stream_id`` (at most ``MAX_LANES``; their events carry it). Each
lane's worker runs its turns in order; lanes run side by side. Each ``response.create``
(``response.append`` after the first, as CLIProxyAPI accepts) becomes a
``Call(client_format="responses", transport="ws", stream=True)`` run through
``dispatch.execute`` with the full conversation (``ws_turns.py``); the stream's SSE events go back
as one JSON text frame each, ending with a terminal event (``response.completed``,
``response.failed``, ``response.incomplete`` or ``error``). Client errors are ``error`` events
(``{"type":"error","status":…,"error":{…}}``) and the connection stays usable.

The session id travels to the upstream executor as the internal header ``x-crossroute-ws-session``
(``providers/ws_upstream.SESSION_HEADER``), which keys the upstream connection pool and is never
sent upstream. A client that goes away cancels the turn in flight, which closes its upstream
connection. A first ``response.create`` with ``generate: false`` is answered here when the
upstream is not a WebSocket one (HTTP upstreams cannot prewarm). Other client events (such as
``response.steer``) go to the session's upstream WebSocket while a turn runs on one; otherwise
they get an ``error`` event saying why.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..call import Call
from ..dispatch import execute
from ..formats.neutral import BadRequest
from ..formats.responses_framer import default_code, is_codex_client
from ..formats.sse import SSEParser
from ..formats.thinking import split_suffix
from ..formats.validate import CHECKS
from ..observe import CallEnded
from ..providers.ws_pool import COMPONENT as POOL_COMPONENT
from ..providers.ws_upstream import BASE_HEADER, CONTEXTS, SESSION_HEADER, SUFFIX_HEADER
from ..replies import Reply, StreamReply
from ..routing.session_ids import SessionIds
from .ws_events import error_event, frames_of, log_rejected, open_log, ws_error_shape
from .ws_turns import TurnError, TurnState

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["GRANIAN_FRAME_LIMIT", "SESSION_HEADER", "WsSession", "error_event", "frames_of", "log_rejected"]

log = logging.getLogger("crossroute")

# granian (tungstenite) resets a connection on a frame over 16 MiB before the app sees it
GRANIAN_FRAME_LIMIT = 16 * 1024 * 1024 - 1024
MAX_QUEUED = 32  # client messages waiting for the turn in flight (per lane)
MAX_LANES = 8  # conversations on one connection (the default one and one per client stream_id)
# A turn's frames are handed to granian without waiting for each send to finish (at most this many
# under way; waiting for each costs a thread round trip per frame, about 0.2 ms). Order is kept:
# granian spawns each send as a task of its single-threaded tokio runtime (the runtime mode granian
# picks for RSGI with one runtime thread, which crossroute never changes), and those tasks take the
# connection's fair mutex in spawn order. tests/e2e/test_responses_ws.py checks the order of 400 events.
SEND_WINDOW = 32
_TURN_TYPES = ("response.create", "response.append")
# a payload that may be a turn's end or an error (then parsed): one search, not four ``in`` tests
# (on CPython 3.11 ``bytes in bytes`` first tries the needle as an integer and raises inside)
_MAYBE_TERMINAL = re.compile(rb'"(?:error|response\.(?:completed|incomplete|failed))"').search
class _Lane:
    """One conversation on the connection: the default one, or one per client ``stream_id``. Each has
    its turn state, its queue and its worker (turns of one lane run in order; lanes run side by side),
    and its own upstream connections (the pool's session is ``<session>:<stream_id>``)."""

    __slots__ = ("busy", "headers", "pool_session", "queue", "state", "stream_id", "tag", "turn_on_ws", "worker")

    def __init__(self, session: WsSession, stream_id: str | None) -> None:
        self.stream_id = stream_id
        self.pool_session = session.id if stream_id is None else f"{session.id}:{stream_id}"
        self.headers = {**session.headers, SESSION_HEADER: self.pool_session}
        self.state = TurnState()
        self.queue: asyncio.Queue[tuple[Any, int]] = asyncio.Queue(MAX_QUEUED)  # (message parsed, its size)
        self.busy = False
        self.turn_on_ws = False  # the turn in flight runs on an upstream WebSocket
        # what every event of this lane carries: "stream_id":"<id>", (nothing for the default lane)
        self.tag = b"" if stream_id is None else b'"stream_id":' + orjson.dumps(stream_id) + b","
        self.worker: asyncio.Task[None] | None = None

    def tagged(self, payload: bytes) -> bytes:
        if not self.tag or payload[:1] != b"{" or payload == b"{}":
            return payload
        return b"{" + self.tag + payload[1:]


class _NotJson:
    """A client message that is not JSON (its lane's worker answers it with an ``error`` event)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _parse(data: str | bytes) -> Any:
    """A client message parsed, once: what it holds, or a ``_NotJson``."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return _NotJson(str(exc))


def _stream_id_of(obj: Any) -> str | None:
    """The ``stream_id`` of a parsed client message (None: the default lane, or not a usable id)."""
    sid = obj.get("stream_id") if obj.__class__ is dict else None
    return sid if isinstance(sid, str) and 0 < len(sid) <= 128 else None


class WsSession:
    """One accepted downstream WebSocket. ``gateway()`` gives the current gateway (reloads swap it)."""

    def __init__(self, gateway: Callable[[], Gateway], transport: Any, path: str, headers: Mapping[str, str],
                 client_key: str | None, frame_limit: int,
                 access: Callable[[str, int, Call | None, float], None] | None = None) -> None:
        self.gateway = gateway
        self.access = access  # (path, status, call, perf_counter at start): one access-log line per turn
        self.transport = transport
        self.path = path
        self.id = uuid.uuid4().hex
        self.headers = {**{k.lower(): v for k, v in headers.items()}, SESSION_HEADER: self.id}
        self.client_key = client_key
        self.frame_limit = min(frame_limit, GRANIAN_FRAME_LIMIT)
        self.codex = is_codex_client(self.headers.get("user-agent"), self.headers.get("originator"))
        self.lanes: dict[str | None, _Lane] = {}
        self.queued_bytes = 0
        self.send_timeout = max(1.0, gateway().settings.idle_timeout)  # a client that reads nothing
        self.closing = False
        self.close_code: int | None = None
        self._reader: asyncio.Task[Any] | None = None
        self.log = open_log(gateway(), {"path": path, "headers": self.headers, "client_key": client_key,
                                        "model": None, "session": self.id})

    @property
    def state(self) -> TurnState:
        """The default lane's turn state."""
        return self._lane(None).state

    def _lane(self, stream_id: str | None) -> _Lane:
        lane = self.lanes.get(stream_id)
        if lane is None:
            lane = self.lanes[stream_id] = _Lane(self, stream_id)
            CONTEXTS[lane.pool_session] = lane.state.history  # how an upstream turn finds the history
            lane.worker = asyncio.get_running_loop().create_task(self._work(lane))
        return lane

    # ------------------------------------------------------------ the loop
    async def run(self) -> int | None:
        """Serve until the client closes (or ``close()``); the close code the gateway chose, if any."""
        self._reader = asyncio.current_task()
        who = "client"  # (a lane, its queue and its worker are made by the first message for it)
        try:
            while not self.closing:
                try:
                    msg = await self.transport.receive()
                except asyncio.CancelledError:
                    if not self.closing or self._reader is None:
                        raise
                    self._reader.uncancel()
                    break
                except Exception as exc:  # granian: the transport is gone (or a frame over its limit)
                    log.debug("websocket receive ended: %r", exc)
                    break
                if msg.kind == 0:  # close
                    log.debug("websocket session %s: the client closed", self.id[:8])
                    break
                data = msg.data
                self.log.client_frame(data)
                if len(data) > self.frame_limit:
                    await self._send_obj(error_event(400, f"websocket message of {len(data)} bytes is larger than "
                                                          f"the {self.frame_limit} byte limit (body-limit-mb); "
                                                          "closing (1009)", code="message_too_big"))
                    self.close_code, who = 1009, "gateway"
                    break
                obj = _parse(data)
                sid = _stream_id_of(obj)
                if sid not in self.lanes and len(self.lanes) >= MAX_LANES:
                    await self._send_obj(error_event(400, f"at most {MAX_LANES} stream_id lanes per connection",
                                                     param="stream_id"))
                    continue
                lane = self._lane(sid)
                if lane.queue.full() or self.queued_bytes + len(data) > 2 * self.frame_limit:
                    await self._send_obj(error_event(429, "too many messages are waiting for the response in "
                                                          f"progress (at most {MAX_QUEUED}, "
                                                          f"{2 * self.frame_limit} bytes)",
                                                     code="rate_limit_exceeded"), lane)
                    continue
                if not self._forward_event(lane, obj):
                    self.queued_bytes += len(data)
                    lane.queue.put_nowait((obj, len(data)))
            if self.closing and who == "client":
                who = "gateway"
        finally:
            workers = [w for lane in self.lanes.values() if (w := lane.worker) is not None and not w.done()]
            for worker in workers:
                worker.cancel()  # a turn in flight: cancelled, its upstream connection closed
            if workers:
                await asyncio.gather(*workers, return_exceptions=True)
            self._end_pool_session()
            for lane in self.lanes.values():
                CONTEXTS.pop(lane.pool_session, None)
            self.log.close(who, self.close_code, "")
            # granian sends its close frame when the transport is dropped: no cycle may keep it
            # (a cancelled worker's traceback holds this session)
            for lane in self.lanes.values():
                lane.worker = None
            self._reader = None
            self.transport = None
        return self.close_code

    def _idle(self) -> bool:
        return all(not lane.busy and lane.queue.empty() for lane in self.lanes.values())

    def close(self) -> None:
        """End the session once no turn is in flight (shutdown): at once when idle."""
        if self.closing:
            return
        self.closing = True
        if self._idle():
            self._stop_reader()

    def abort(self) -> None:
        """End the session now, cancelling its turns in flight."""
        self.closing = True
        for lane in self.lanes.values():
            if lane.worker is not None:
                lane.worker.cancel()
        self._stop_reader()

    def _stop_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()

    async def _work(self, lane: _Lane) -> None:
        while True:
            obj, size = await lane.queue.get()
            self.queued_bytes -= size
            lane.busy = True
            try:
                await self._turn(lane, obj)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("websocket turn failed")
                await self._send_obj(error_event(500, "internal error in crossroute (see its log)"), lane)
            finally:
                lane.busy = False
            if self.closing and self._idle():
                self._stop_reader()
                return

    def _end_pool_session(self) -> None:
        pool = self.gateway().find_component(POOL_COMPONENT)
        if pool is not None:
            pool.close_session(self.id)

    # ------------------------------------------------------------ sending
    async def _send_obj(self, obj: dict[str, Any], lane: _Lane | None = None) -> int:
        if obj.get("type") == "error":
            self.log.error(str(obj["error"].get("message")))
        payload = orjson.dumps(obj)
        return await self._send(lane.tagged(payload) if lane is not None else payload)

    async def _send(self, payload: bytes) -> int:
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.transport.send_str(payload.decode())
        except TimeoutError:  # the client reads nothing: the session ends (its turn is cancelled)
            log.info("websocket session dropped: the client read nothing for %g s (idle-timeout-seconds)",
                     self.send_timeout)
            self.abort()
            return 0
        except Exception as exc:  # the client is gone; the reader sees it too
            log.debug("websocket send failed: %r", exc)
            return 0
        return len(payload)

    # ------------------------------------------------------------ one client message
    def _forward_event(self, lane: _Lane, obj: Any) -> bool:
        """A non-turn client event while a turn runs on an upstream WebSocket: sent there at once."""
        if not lane.turn_on_ws or obj.__class__ is not dict:
            return False
        kind = obj.get("type")
        if kind in _TURN_TYPES or not isinstance(kind, str):
            return False
        pool = self.gateway().find_component(POOL_COMPONENT)
        conn = pool.busy_for_session(lane.pool_session) if pool is not None else None
        if conn is None:
            return False
        obj.pop("stream_id", None)
        task = asyncio.get_running_loop().create_task(conn.ws.send_str(orjson.dumps(obj).decode()))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        return True

    async def _turn(self, lane: _Lane, obj: Any) -> None:
        if isinstance(obj, _NotJson):
            await self._send_obj(error_event(400, f"websocket message is not valid JSON: {obj.reason}"), lane)
            return
        if not isinstance(obj, dict):
            await self._send_obj(error_event(400, f"websocket message must be a JSON object, got "
                                                  f"{type(obj).__name__}"), lane)
            return
        kind = obj.get("type")
        state = lane.state
        if kind == "response.append" and state.last_request is None:
            await self._send_obj(error_event(400, "websocket request received before response.create",
                                             param="type"), lane)
            return
        if kind not in _TURN_TYPES:
            if isinstance(kind, str) and kind.startswith("response."):
                why = ("this session's upstream is not a WebSocket upstream" if not lane.turn_on_ws
                       else "no response is in progress")
                await self._send_obj(error_event(400, f"websocket message type {kind!r} is not supported here: "
                                                      f"{why}", param="type"), lane)
            else:
                await self._send_obj(error_event(400, f"unsupported websocket message type: {kind!r} (expected "
                                                      "response.create)", param="type"), lane)
            return
        try:
            body, rule, full = state.prepare(obj)
            # the items this message adds (a continued history was checked as it came, or is the
            # upstream's own output): checking the whole conversation again cost O(turns) per turn
            CHECKS["responses"]({**body, "input": obj.get("input")} if rule == "continue" else body)
        except TurnError as exc:
            await self._send_obj(error_event(400, exc.message, param=exc.param), lane)
            return
        except BadRequest as exc:
            await self._send_obj(error_event(exc.status, exc.message, param=exc.param), lane)
            return
        gw = self.gateway()
        model = str(body["model"]).strip()
        meta = getattr(self.log, "meta", None)
        if isinstance(meta, dict) and not meta.get("model"):
            meta["model"] = model
        ws_upstream = _served_over_ws(gw, model)
        if body.get("generate") is False and not ws_upstream:
            await self._prewarm(lane, gw, body, full)
            return
        if not ws_upstream:
            body.pop("generate", None)
        body["stream"] = True  # a Responses passthrough upstream reads it from the body (never sent over WebSocket)
        state.started(body)
        base = state.base
        if ws_upstream and base is not None and full is not None:
            # only the new items: the upstream connection holds the rest, or the executor puts the
            # history back from CONTEXTS (never serialized and parsed again for a warm turn)
            body = {**body, "input": full[base[1]:]}
        await self._run(lane, gw, model, body, full, rule, ws_upstream)

    async def _prewarm(self, lane: _Lane, gw: Gateway, body: dict[str, Any], full: list[Any] | None) -> None:
        t0 = time.monotonic()
        rid = "resp_prewarm_" + uuid.uuid4().hex
        now = int(time.time())
        base = {"id": rid, "object": "response", "created_at": now, "model": body["model"], "output": [],
                "instructions": body.get("instructions"), "tools": body.get("tools") or [], "error": None}
        usage = {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}
        sent = await self._send_obj({"type": "response.created", "sequence_number": 0,
                                     "response": {**base, "status": "in_progress", "usage": None}}, lane)
        sent += await self._send_obj({"type": "response.completed", "sequence_number": 1,
                                      "response": {**base, "status": "completed", "usage": usage,
                                                   "completed_at": now}}, lane)
        lane.state.started(body)
        lane.state.completed(full, {"id": rid, "output": []})
        if gw.observers.enabled:
            gw.observers.call_ended(CallEnded("WS", self.path, "responses", 200, None, t0, time.monotonic(),
                                              transport="ws", bytes_out=sent))

    async def _run(self, lane: _Lane, gw: Gateway, model: str, body: dict[str, Any], full: list[Any] | None,
                   rule: str, ws_upstream: bool) -> None:
        t0 = time.monotonic()
        started = time.perf_counter() if self.access is not None else 0.0
        base = lane.state.base
        if base is None:
            headers = lane.headers
        else:  # the input holds that history's items, or (over WebSocket) only what follows them
            headers = {**lane.headers, (SUFFIX_HEADER if ws_upstream else BASE_HEADER): f"{base[0]} {base[1]}"}
        call = Call("responses", model, body, headers, stream=True, client_key=self.client_key,
                    options={"codex_client": self.codex}, transport="ws")
        if gw.settings.routing.session_affinity:
            call.session = SessionIds("ws:" + lane.pool_session)
        status, sent, error = 500, 0, None
        lane.turn_on_ws = ws_upstream
        reply: Reply | StreamReply | None = None
        try:
            reply = await execute(gw, call)
            status = reply.status
            if isinstance(reply, Reply):
                sent, error = await self._send_reply_error(lane, reply)
            else:
                sent, error = await self._relay(lane, reply, full)
        finally:
            lane.turn_on_ws = False
            if reply is None:
                error = error or "the turn was cancelled (client gone)"
            if gw.observers.watching:  # the hub tells failure-only observers of failed turns only
                gw.observers.call_ended(CallEnded("WS", self.path, "responses", status, call, t0, time.monotonic(),
                                                  transport="ws", bytes_out=sent, error=error))
            if self.access is not None:
                self.access(self.path, status, call, started)
        log.debug("websocket turn %d (%s) ended with %s", lane.state.turns, rule, status)

    async def _send_reply_error(self, lane: _Lane, reply: Reply) -> tuple[int, str]:
        try:
            obj = orjson.loads(reply.body)
            err = obj.get("error") if isinstance(obj, dict) else None
        except orjson.JSONDecodeError:
            err = None
        if not isinstance(err, dict):
            err = {"type": "server_error", "code": default_code(reply.status),
                   "message": reply.body.decode("utf-8", "replace")[:2000], "param": None}
        event = {"type": "error", "status": reply.status, "error": err}
        self.log.upstream_event(orjson.dumps(event))
        return await self._send_obj(event, lane), str(err.get("message"))

    async def _relay(self, lane: _Lane, reply: StreamReply, full: list[Any] | None) -> tuple[int, str | None]:
        sent = 0
        error: str | None = None
        chunks = reply.chunks
        tag = lane.tag
        window: deque[Any] = deque()  # sends under way, oldest first (see SEND_WINDOW)
        send = self.transport.send_str
        parser = SSEParser()  # events split across chunks are put back together
        maybe_terminal = _MAYBE_TERMINAL
        try:
            async for chunk in chunks:
                for payload in frames_of(chunk, parser):
                    if maybe_terminal(payload) is not None:
                        payload, error = self._terminal(lane, payload, full, error)
                    self.log.upstream_event(payload)
                    try:
                        window.append(send((lane.tagged(payload) if tag else payload).decode()))
                    except Exception as exc:  # the client is gone; the reader sees it too
                        log.debug("websocket send failed: %r", exc)
                        continue
                    sent += len(payload)
                    if len(window) >= SEND_WINDOW:
                        await self._settle(window, SEND_WINDOW // 2)
            await self._settle(window, 0)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        return sent, error

    async def _settle(self, window: deque[Any], keep: int) -> None:
        """Wait for the oldest sends until at most ``keep`` are under way, all within the send timeout
        (one timer for the lot: one per frame cost about 4 µs each)."""
        if len(window) <= keep:
            return
        try:
            async with asyncio.timeout(self.send_timeout):
                while len(window) > keep:
                    fut = window.popleft()
                    try:
                        await fut
                    except Exception as exc:  # the client is gone; the reader sees it too
                        log.debug("websocket send failed: %r", exc)
        except TimeoutError:
            log.info("websocket session dropped: the client read nothing for %g s (idle-timeout-seconds)",
                     self.send_timeout)
            window.clear()
            self.abort()

    @staticmethod
    def _terminal(lane: _Lane, payload: bytes, full: list[Any] | None, error: str | None
                  ) -> tuple[bytes, str | None]:
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return payload, error
        if not isinstance(obj, dict):
            return payload, error
        kind = obj.get("type")
        if kind in ("response.completed", "response.incomplete") and isinstance(obj.get("response"), dict):
            lane.state.completed(full, obj["response"])
        elif kind == "error":
            shaped = ws_error_shape(obj)
            msg = shaped["error"].get("message")
            return (orjson.dumps(shaped) if shaped is not obj else payload), str(msg)
        elif kind == "response.failed":
            resp = obj.get("response")
            err = resp.get("error") if isinstance(resp, dict) else None
            return payload, str(err.get("message") if isinstance(err, dict) else "response.failed")
        return payload, error


def _served_over_ws(gw: Gateway, model: str) -> bool:
    """Whether every candidate for ``model`` is a WebSocket upstream (then it prewarms itself, and
    ``generate`` may be sent; an HTTP upstream never sees it)."""
    base, _ = split_suffix(model)
    candidates = gw.registry.resolve(base) or gw.registry.resolve(model)
    return bool(candidates) and all(getattr(c.executor, "websocket", False) for c in candidates)
