"""Request logs (``request-log: true``: one file per request and per WebSocket session) and error
logs (with it off: one file per failed request, the newest ``error-logs-max-files`` kept).

A log has the sections ``REQUEST INFO``, ``HEADERS`` (secrets masked), ``REQUEST BODY``, a
``TIMELINE`` of each upstream attempt (``API REQUEST`` with its translated body, ``API RESPONSE``
chunks with their time since the call started), ``RESPONSE`` (what the client got), ``ATTEMPTS``
and ``ROUTING TRACE``. Each body is kept up to ``request-log-max-body`` bytes (the rest is marked
truncated). While a call runs its bodies go to a spool file through the writer thread
(``log_files.LogWriter``); nothing waits for the disk on the request path.

The pipeline feeds bodies through ``call.log`` (a ``CallLog``; None when the request log is off):
``attempt_body(attempt, body)``, ``upstream(attempt, chunk)``, ``client(data)``.
WebSocket sessions use ``open_ws(gw, meta)`` -> ``WsLog`` and ``rejected_upgrade(gw, meta, ...)``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .. import redaction
from ..usage.records import key_id
from .events import new_request_id
from .log_files import LogWriter, file_name, is_log_name
from .traces import trace_dict

if TYPE_CHECKING:
    from ..call import Attempt, Call
    from ..gateway import Gateway
    from .events import CallEnded

__all__ = ["CallLog", "RequestLog", "WsLog", "delete_logs", "find_log", "list_logs", "open_ws", "read_log",
           "rejected_upgrade"]

SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "proxy-authorization", "cookie",
                            "x-management-key", "set-cookie", "chatgpt-account-id", "openai-organization"})
MAX_WAITING = 1000  # finished calls waiting for the writer; beyond it their logs are dropped (counted)
_QUIET_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # logged only when they fail (as CLIProxyAPI does)
_TRUNCATED = b"\n[... truncated: %d more bytes not logged (request-log-max-body) ...]\n"


def _skipped(path: str) -> bool:
    return path.startswith(("/v0/management", "/management", "/metrics"))


def _headers(headers: Mapping[str, str] | None) -> bytes:
    if not headers:
        return b"(none)\n"
    lines = []
    for name, value in headers.items():
        low = name.lower()
        if low in SECRET_HEADERS:
            scheme, sep, token = value.partition(" ")
            shown = f"{scheme} {redaction.mask(token.strip())}" if sep and token.strip() else redaction.mask(value)
        else:
            shown = redaction.scrub(value)
        lines.append(f"{name}: {shown}")
    return ("\n".join(lines) + "\n").encode()


def _cap(data: bytes, limit: int) -> bytes:
    data = redaction.scrub_bytes(data)
    if len(data) <= limit:
        return data
    return data[:limit] + _TRUNCATED % (len(data) - limit)


def _as_bytes(data: bytes | str | Any) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    return orjson.dumps(data, default=str)


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"


class _Budget:
    """Bytes of one body still allowed into the log."""

    __slots__ = ("left", "lost")

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.lost = 0

    def take(self, data: bytes) -> bytes | None:
        if self.left <= 0:
            self.lost += len(data)
            return None
        if len(data) > self.left:
            self.lost += len(data) - self.left
            data = data[: self.left]
        self.left -= len(data)
        return data


class CallLog:
    """The spool of one call in flight (made by ``RequestLog.spool`` when the request log is on)."""

    __slots__ = ("_attempt_no", "_budgets", "_client", "_writer", "limit", "spool", "t0")

    def __init__(self, writer: LogWriter, call: Call, limit: int, spool: str) -> None:
        self._writer = writer
        self.limit = limit
        self.spool = spool
        self.t0 = call.started
        self._budgets: dict[int, tuple[_Budget, _Budget]] = {}
        self._attempt_no: dict[int, int] = {}
        self._client = _Budget(limit)

    def _entry(self, title: str, data: bytes | None, lost: int = 0) -> None:
        ms = (time.monotonic() - self.t0) * 1000
        head = f"--- [+{ms:.3f} ms] {title}\n".encode()
        body = redaction.scrub_bytes(data) if data else b""
        tail = (_TRUNCATED % lost) if lost else b""
        blob = head + body + (b"" if body.endswith(b"\n") or not body else b"\n") + tail
        self._writer.put(self._writer.spool_append, self.spool, blob, size=len(blob))

    def _budget(self, attempt: Attempt) -> tuple[int, tuple[_Budget, _Budget]]:
        key = id(attempt)
        b = self._budgets.get(key)
        if b is None:
            b = self._budgets[key] = (_Budget(self.limit), _Budget(self.limit))
            self._attempt_no[key] = len(self._attempt_no) + 1
        return self._attempt_no[key], b

    def attempt_body(self, attempt: Attempt, body: bytes | Any) -> None:
        no, (req, _) = self._budget(attempt)
        data = _as_bytes(body)
        kept = req.take(data)
        self._entry(f"API REQUEST #{no}: {attempt.credential_id} model={attempt.upstream_model} "
                    f"wire={attempt.wire}", kept, req.lost)

    def upstream(self, attempt: Attempt, chunk: bytes) -> None:
        no, (_, resp) = self._budget(attempt)
        if not chunk:
            self._entry(f"API RESPONSE #{no}: end of stream", None)
            return
        if resp.left <= 0:
            resp.lost += len(chunk)
            return
        kept = resp.take(chunk)
        self._entry(f"API RESPONSE #{no} ({len(chunk)} bytes)", kept, len(chunk) - len(kept or b""))

    def client(self, data: bytes) -> None:
        budget = self._client
        if budget.left <= 0:
            budget.lost += len(data)
            return
        kept = budget.take(data)
        self._entry(f"RESPONSE to client ({len(data)} bytes)", kept, len(data) - len(kept or b""))

    def lost_note(self) -> bytes:
        lines = []
        for key, (_, resp) in self._budgets.items():
            no = self._attempt_no[key]
            if resp.lost:
                lines.append(f"attempt #{no}: {resp.lost} more upstream bytes not logged")
        if self._client.lost:
            lines.append(f"{self._client.lost} more bytes to the client not logged")
        return ("\n".join(lines) + "\n").encode() if lines else b""


class RequestLog:
    """Observer: writes the log of each finished call (all with ``request-log``, else failed ones)."""

    def __init__(self, gw: Gateway) -> None:
        s = gw.settings
        self.gw = gw
        self.folder = s.logs_dir
        self.writer = LogWriter(s.logs_dir, s.error_logs_max_files, int(s.logs_max_total_size_mb * 1024 * 1024))
        self.full = s.request_log
        self.limit = s.request_log_max_body
        self._spools = 0
        # finished calls queued for the writer (each keeps its body alive until written): each counter
        # is written by one thread only (the loop / the writer), so none loses an update
        self._queued = 0
        self._done = 0
        self._by_id: dict[str, str] = {}  # request id -> file name, for the newest logs

    def configure(self, gw: Gateway) -> None:
        s = gw.settings
        self.gw = gw
        self.full = s.request_log
        self.limit = s.request_log_max_body
        self.writer.set_limits(s.error_logs_max_files, int(s.logs_max_total_size_mb * 1024 * 1024))

    def spool(self, call: Call) -> CallLog:
        self._spools += 1
        return CallLog(self.writer, call, self.limit, f"{id(self):x}-{self._spools}.spool")

    # observer
    wants_attempts = False  # told of finished calls only (Hub.attempts)

    def attempt_ended(self, call: Call, attempt: Attempt) -> None:
        return None

    def call_ended(self, event: CallEnded) -> None:
        if _skipped(event.path):
            return
        call = event.call
        clog = getattr(call, "log", None) if call is not None else None
        failed = event.status >= 400 or event.error is not None
        if not failed and (not self.full or event.method in _QUIET_METHODS):
            if clog is not None:
                self.writer.put(self.writer.discard, clog.spool)
            return
        if self._queued - self._done >= MAX_WAITING:  # the disk is behind: keep no more calls (and bodies) alive
            self.writer.dropped += 1
            if clog is not None:
                self.writer.put(self.writer.discard, clog.spool)
            return
        error = not self.full
        name = file_name(event.path, time.time() - (time.monotonic() - event.started), event.request_id, error)
        self._remember(event.request_id, name)
        # the call is finished: the writer thread renders it (nothing else touches it any more)
        if self.writer.put(self._write, name, event, clog, self.limit):
            self._queued += 1

    def _remember(self, rid: str, name: str) -> None:
        ids = self._by_id
        if len(ids) >= 10_000:
            for k in list(ids)[:1000]:
                del ids[k]
        ids[rid] = name

    def _write(self, name: str, event: CallEnded, clog: CallLog | None, limit: int) -> None:
        self._done += 1
        head, tail = render(event, clog, limit)
        self.writer.finish(name, head, clog.spool if clog is not None else None, tail)

    async def stop(self) -> None:
        await asyncio.to_thread(self.writer.stop)

    def reconfigure(self, gw: Gateway, removed: set[str]) -> None:
        return None


def render(event: CallEnded, clog: CallLog | None, limit: int) -> tuple[bytes, bytes]:
    """The parts of a log before and after the spooled timeline."""
    call = event.call
    offset = time.time() - time.monotonic()
    info = [
        f"Request-ID: {event.request_id}",
        f"Time: {_iso(event.started + offset)}",
        f"Method: {event.method}",
        f"Path: {event.path}",
        f"Client format: {event.client_format}",
        f"Transport: {event.transport}",
        f"Status: {event.status}",
        f"Duration: {(event.ended - event.started) * 1000:.3f} ms",
    ]
    if call is not None:
        info += [f"Model: {call.model}", f"Operation: {call.operation}", f"Stream: {call.stream}",
                 f"Client key: {key_id(call.client_key) or '-'}",
                 f"Upstream model: {call.upstream_model or '-'}", f"Credential: {call.credential_id or '-'}"]
        if call.session is not None:
            info.append(f"Session source: {call.session.primary.partition(':')[0]}")
    parts = [b"=== REQUEST INFO ===\n", ("\n".join(info) + "\n").encode(),
             b"\n=== HEADERS ===\n", _headers(call.headers if call is not None else None),
             b"\n=== REQUEST BODY ===\n"]
    if call is not None:
        parts += [_cap(orjson.dumps(call.body, default=str, option=orjson.OPT_INDENT_2), limit), b"\n"]
    else:
        parts.append(b"(not read)\n")
    parts.append(b"\n=== TIMELINE ===\n")
    if clog is None:
        parts.append(b"(bodies are kept with request-log: true)\n")
    head = b"".join(parts)
    tail = [b"\n"]
    if clog is not None:
        tail.append(clog.lost_note())
    tail.append(b"=== ATTEMPTS ===\n")
    if call is not None and call.attempts:
        for i, a in enumerate(call.attempts, 1):
            ms = ((a.end or event.ended) - a.start) * 1000
            ttfb = f"{(a.first_byte - a.start) * 1000:.3f} ms" if a.first_byte is not None else "-"
            err = redaction.scrub(a.error) if a.error else "-"
            tail.append(f"#{i} {a.credential_id} model={a.upstream_model} wire={a.wire} status={a.status} "
                        f"time={ms:.3f} ms first-byte={ttfb} error={err}\n".encode())
    else:
        tail.append(b"(none)\n")
    tail.append(b"\n=== RESPONSE ===\n")
    tail.append(f"Status: {event.status}\n".encode())
    if event.bytes_out:
        tail.append(f"Bytes: {event.bytes_out}\n".encode())
    if event.error:
        tail.append(f"Error: {redaction.scrub(event.error)}\n".encode())
    if call is not None:
        u = call.usage
        if u is not None:
            tail.append(f"Usage: input={u.input_tokens} output={u.output_tokens} cached={u.cached_tokens} "
                        f"cache_creation={u.cache_creation_tokens} reasoning={u.reasoning_tokens}\n".encode())
        tail.append(b"\n=== ROUTING TRACE ===\n")
        if call.trace is not None or call.attempts:
            tail += [orjson.dumps(trace_dict(call), default=str, option=orjson.OPT_INDENT_2), b"\n"]
        else:
            tail.append(b"(none)\n")
    return head, b"".join(tail)


# ------------------------------------------------------------------ WebSocket sessions


class WsLog:
    """The log of one WebSocket session (see the module docstring). Every method returns at once."""

    __slots__ = ("_client", "_errors", "_upstream", "closed", "full", "meta", "owner", "rid", "spool", "started",
                 "wall")

    def __init__(self, owner: RequestLog | None, meta: Mapping[str, Any], full: bool) -> None:
        self.owner = owner
        self.meta = dict(meta)
        self.full = full and owner is not None
        self.started = time.monotonic()
        self.wall = time.time()
        self.rid = str(self.meta.get("request_id") or _rid())
        self.spool = f"ws-{id(self):x}-{self.rid}.spool"
        limit = owner.limit if owner is not None else 0
        self._client = _Budget(limit)
        self._upstream = _Budget(limit)
        self._errors: list[str] = []
        self.closed = False

    def _entry(self, title: str, data: bytes | None, lost: int = 0) -> None:
        if self.owner is None:
            return
        ms = (time.monotonic() - self.started) * 1000
        body = redaction.scrub_bytes(data) if data else b""
        blob = (f"--- [+{ms:.3f} ms] {title}\n".encode() + body + (b"\n" if body and not body.endswith(b"\n") else b"")
                + ((_TRUNCATED % lost) if lost else b""))
        w = self.owner.writer
        w.put(w.spool_append, self.spool, blob, size=len(blob))

    def _frame(self, who: str, budget: _Budget, data: bytes | str) -> None:
        if not self.full or self.closed:
            return
        raw = _as_bytes(data)
        if budget.left <= 0:
            budget.lost += len(raw)
            return
        kept = budget.take(raw)
        self._entry(f"{who} ({len(raw)} bytes)", kept, len(raw) - len(kept or b""))

    def client_frame(self, data: bytes | str) -> None:
        self._frame("client frame", self._client, data)

    def upstream_event(self, data: bytes | str) -> None:
        self._frame("upstream event", self._upstream, data)

    def error(self, message: str) -> None:
        if self.closed:
            return
        self._errors.append(redaction.scrub(message)[:2000])
        if self.full:
            self._entry("error", message.encode())

    def close(self, who: str, code: int | None = None, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        owner = self.owner
        if owner is None:
            return
        if self.full:
            self._entry(f"closed by {who}: code={code} reason={reason}", None)
        abnormal = bool(self._errors) or (code is not None and code not in (1000, 1001))
        if not (self.full or abnormal):
            return
        name = file_name(str(self.meta.get("path") or "ws"), self.wall, self.rid, not self.full)
        owner._remember(self.rid, name)
        head = self._head(who, code, reason)
        tail = b""
        lost = []
        if self._client.lost:
            lost.append(f"{self._client.lost} more client bytes not logged")
        if self._upstream.lost:
            lost.append(f"{self._upstream.lost} more upstream bytes not logged")
        if lost:
            tail = ("\n" + "\n".join(lost) + "\n").encode()
        w = owner.writer
        w.put(w.finish, name, head, self.spool if self.full else None, tail)

    def _head(self, who: str, code: int | None, reason: str) -> bytes:
        m = self.meta
        info = [f"Request-ID: {self.rid}", f"Time: {_iso(self.wall)}", "Method: GET (WebSocket)",
                f"Path: {m.get('path')}", "Transport: ws", f"Model: {m.get('model') or '-'}",
                f"Client key: {key_id(m.get('client_key')) or '-'}",
                f"Duration: {(time.monotonic() - self.started) * 1000:.3f} ms",
                f"Closed by: {who} code={code} reason={redaction.scrub(reason)}"]
        info += [f"Error: {e}" for e in self._errors]
        return b"".join([b"=== REQUEST INFO ===\n", ("\n".join(info) + "\n").encode(), b"\n=== HEADERS ===\n",
                         _headers(m.get("headers")), b"\n=== WEBSOCKET TIMELINE ===\n",
                         b"" if self.full else b"(frames are kept with request-log: true)\n"])


def _rid() -> str:
    return new_request_id()


_NULL_META: dict[str, Any] = {}


def _owner(gw: Gateway) -> RequestLog | None:
    return gw.observers.named.get("request_log")  # type: ignore[no-any-return]


def open_ws(gw: Gateway, meta: Mapping[str, Any]) -> WsLog:
    """The log of a WebSocket session that was accepted (a no-op handle when no log is kept)."""
    owner = _owner(gw)
    if owner is None or _skipped(str(meta.get("path") or "")):
        return WsLog(None, _NULL_META, False)
    return WsLog(owner, meta, owner.full)


def rejected_upgrade(gw: Gateway, meta: Mapping[str, Any], status: int, reason: str) -> None:
    """A refused WebSocket upgrade: an error log (with the request log on too, as its request log)."""
    owner = _owner(gw)
    if owner is None:
        return
    h = WsLog(owner, meta, False)
    h.full = False
    h.error(f"upgrade refused with HTTP {status}: {reason}")
    h.close("gateway", None, reason)


# ------------------------------------------------------------------ for the management API


def list_logs(gw: Gateway) -> list[dict[str, Any]]:
    """The logs in the folder, newest first: name, size, mtime, kind (request | error)."""
    owner = _owner(gw)
    folder = Path(os.path.expanduser(owner.folder if owner is not None else gw.settings.logs_dir))
    out = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for e in entries:
        if e.is_file(follow_symlinks=False) and is_log_name(e.name):
            st = e.stat()
            out.append({"name": e.name, "size": st.st_size, "mtime": st.st_mtime,
                        "kind": "error" if e.name.startswith("error-") else "request"})
    out.sort(key=lambda d: d["mtime"], reverse=True)
    return out


def read_log(gw: Gateway, name: str) -> bytes | None:
    if not is_log_name(name) or "/" in name or "\\" in name:
        return None
    owner = _owner(gw)
    path = Path(os.path.expanduser(owner.folder if owner is not None else gw.settings.logs_dir)) / name
    try:
        return path.read_bytes()
    except OSError:
        return None


def find_log(gw: Gateway, request_id: str) -> str | None:
    owner = _owner(gw)
    if owner is not None and (name := owner._by_id.get(request_id)) is not None:
        return name
    suffix = f"-{request_id}.log"
    for item in list_logs(gw):
        if item["name"].endswith(suffix):
            return str(item["name"])
    return None


def delete_logs(gw: Gateway) -> int:
    """Remove the request logs (error logs stay); the number removed."""
    owner = _owner(gw)
    folder = Path(os.path.expanduser(owner.folder if owner is not None else gw.settings.logs_dir))
    names = {d["name"] for d in list_logs(gw) if d["kind"] == "request"}
    n = 0
    for name in names:
        try:
            (folder / name).unlink()
            n += 1
        except OSError:
            pass
    if owner is not None:
        owner.writer.forget(names)
    return n
