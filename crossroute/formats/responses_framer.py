"""Passthrough SSE framer for OpenAI Responses streams (client and upstream both speak Responses).

Upstream bytes are re-framed, not re-rendered: the framer reassembles events that arrive split at
any byte (an ``event:`` line cut from its ``data:`` line, a JSON payload cut in two, data-only
frames, ``\\n\\n`` or ``\\r\\n\\r\\n`` delimiters), forwards each complete event as
``event: <name>\\ndata: <payload>\\n\\n`` (payload bytes unchanged), and guarantees the client a
terminal event:

* an upstream error payload (``response.failed``, ``error``, a non-null ``error``...) becomes one
  sanitised terminal error: ``event: error`` ``{"type":"error","code","message","param",
  "sequence_number"}``, or for Codex clients ``event: response.failed`` with a failed Response;
* a ``response.completed`` whose ``response.output`` is empty or missing is rebuilt from the
  ``response.output_item.done`` items seen so far (by ``output_index``, unindexed ones last);
* a stream that ends without a terminal event, or a data payload that is not valid JSON, ends
  with a 502-style terminal error instead of a broken stream;
* nothing is emitted after a terminal event.

``framer.usage`` holds the neutral usage of the terminal ``response.completed``/``incomplete``
event (for accounting); ``framer.completed`` tells whether the stream ended successfully.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson

from .neutral import Usage

__all__ = [
    "ResponsesFramer",
    "default_code",
    "failed_response",
    "is_codex_client",
    "sanitize_error_text",
    "usage_from_responses",
    "usage_to_responses",
]

# ---------------------------------------------------------------- usage


def usage_from_responses(usage: dict[str, Any] | None) -> Usage:
    """Neutral usage from a Responses ``usage`` object (input/output/cached/reasoning tokens)."""
    if not isinstance(usage, dict):
        return Usage()
    itd = usage.get("input_tokens_details")
    otd = usage.get("output_tokens_details")
    cached = cache_write = reasoning = 0
    if isinstance(itd, dict):
        cached = itd.get("cached_tokens") or 0
        cache_write = itd.get("cache_write_tokens") or itd.get("cache_creation_tokens") or 0
    if isinstance(otd, dict):
        reasoning = otd.get("reasoning_tokens") or 0
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cached_tokens=int(cached),
        cache_creation_tokens=int(cache_write),
        reasoning_tokens=int(reasoning),
    )


def usage_to_responses(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": u.cache_creation_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


# ---------------------------------------------------------------- codex clients

_CODEX_MARKERS = ("codex_cli_rs", "codex-tui", "codex desktop")


def is_codex_client(user_agent: str | None, originator: str | None) -> bool:
    """True for the Codex CLI / TUI / Desktop (User-Agent or ``Originator`` header), which expect
    ``response.failed`` rather than an ``error`` event as the terminal failure."""
    for value in (user_agent, originator):
        if value:
            low = value.lower()
            for marker in _CODEX_MARKERS:
                if marker in low:
                    return True
    return False


# ---------------------------------------------------------------- error sanitising

_BEARER = re.compile(r"(?i)\bbearer\s+(?!\[REDACTED\])[A-Za-z0-9\-._~+/]+=*")
_SECRET_KV = re.compile(
    r"(?i)(\b(?:x-api-key|api[_-]?key|access[_-]?token|refresh[_-]?token|id[_-]?token|token|"
    r"authorization|client[_-]?secret|secret|password)[\"']?\s*[:=]\s*[\"']?)"
    r"(?!bearer\b|\[REDACTED\])([^\s\"'&,;}]+)"
)
MESSAGE_LIMIT = 2048
FIELD_LIMIT = 256


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def sanitize_error_text(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Redact credentials (``api_key=…``, ``"token": "…"``, ``Authorization: …``, ``Bearer …``)
    and clip to ``limit`` characters (an ellipsis marks a cut)."""
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub("Bearer [REDACTED]", text)
    text = _SECRET_KV.sub(r"\1[REDACTED]", text)
    return _clip(text, limit)


def default_code(status: int) -> str:
    """The OpenAI error code a status maps to when the upstream gave none."""
    if status == 429:
        return "rate_limit_exceeded"
    if status == 401:
        return "invalid_api_key"
    if status == 403:
        return "insufficient_quota"
    if status == 404:
        return "model_not_found"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


_default_code = default_code  # kept for callers that imported the private name


def _status_of(*sources: Any) -> int:
    for src in sources:
        if not isinstance(src, dict):
            continue
        for key in ("status", "status_code", "statusCode", "http_status"):
            v = src.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 599:
                return v
            if isinstance(v, str) and v.isdigit() and 400 <= int(v) <= 599:
                return int(v)
    return 502


# ---------------------------------------------------------------- framing

_TERMINAL_OK = frozenset({"response.completed", "response.incomplete", "response.done"})
_TERMINAL_ERR = frozenset({"response.failed", "response.error", "error"})
_TERMINAL = _TERMINAL_OK | _TERMINAL_ERR
_FIELD_STARTS = (b"data:", b"event:", b"id:", b"retry:", b":")


def _fields(frame: bytes) -> tuple[bytes | None, list[bytes]]:
    """(event name, data lines) of one frame (WHATWG field rules; CR, LF, CRLF line ends)."""
    if frame.startswith(b"event: "):  # fast path: the usual two-line frame
        nl = frame.find(b"\n")
        if nl > 0 and frame.startswith(b"data: ", nl + 1) and frame.find(b"\n", nl + 1) < 0 and frame.find(b"\r") < 0:
            return frame[7:nl].strip(), [frame[nl + 7 :]]
    if frame.find(b"\r") >= 0:
        frame = frame.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    event: bytes | None = None
    data: list[bytes] = []
    for line in frame.split(b"\n"):
        if not line or line[0] == 0x3A:  # blank or ':' comment
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.strip()
    return event, data


def _valid_json(data: bytes) -> bool:
    if data == b"[DONE]":
        return True
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def _complete(frame: bytes, *, need_event: bool, data_only: bool = False) -> bool:
    """Whether a frame without its delimiter is already whole: it has data (and an event name
    when ``need_event``; none when ``data_only``) and every data line is valid JSON."""
    tail = frame.rstrip()
    if not tail or tail[-1:] not in (b"}", b"]"):  # cheap reject before parsing
        return False
    event, data = _fields(frame)
    if not data or (need_event and event is None) or (data_only and event is not None):
        return False
    return all(_valid_json(line) for line in data)


def _line_complete(pending: bytes) -> bool:
    """Whether the last (unterminated) line of ``pending`` is a whole field, so that a chunk
    starting with a field name begins a new line rather than continuing a cut JSON payload."""
    cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
    line = pending[cut:]
    if line.startswith((b"event:", b"id:", b"retry:", b":")):
        return True
    if line.startswith(b"data:"):
        value = line[5:]
        if value[:1] == b" ":
            value = value[1:]
        tail = value.rstrip()
        return tail[-1:] in (b"}", b"]") and _valid_json(value)
    return False


class ResponsesFramer:
    """Feed raw upstream chunks; get back well-framed client bytes (see module doc)."""

    __slots__ = (
        "_created_at",
        "_items",
        "_model",
        "_pending",
        "_response_id",
        "_seq",
        "_unindexed",
        "codex_client",
        "completed",
        "error",
        "last_event",
        "terminal",
        "usage",
    )

    def __init__(self, codex_client: bool = False) -> None:
        self.codex_client = codex_client
        self._pending = b""
        self._seq = -1  # highest sequence_number seen
        self._items: dict[int, Any] = {}  # output_index -> response.output_item.done item
        self._unindexed: list[Any] = []
        self._response_id: str | None = None
        self._created_at: Any = None
        self._model: str | None = None
        self.terminal = False  # a terminal frame went out; nothing follows
        self.completed = False  # ...and it was response.completed / incomplete
        self.usage: Usage | None = None
        self.error: tuple[int, str, str] | None = None  # (status, code, message) when failed
        self.last_event: str | None = None

    # ------------------------------------------------------------ public

    def feed(self, chunk: bytes) -> bytes:
        if self.terminal or not chunk:
            return b""
        out: list[bytes] = []
        pending = self._pending
        if pending:
            if chunk.startswith(b"data:") and _complete(pending, need_event=False, data_only=True):
                # a whole data-only frame followed by the next frame: close it on its own
                out.append(self._frame(pending))
                pending = b""
                if self.terminal:
                    self._pending = b""
                    return b"".join(out)
            elif (
                chunk.startswith(b"event:")
                and pending[-1:] not in (b"\n", b"\r")
                and _complete(pending, need_event=False, data_only=True)
            ):
                out.append(self._frame(pending))
                pending = b""
                if self.terminal:
                    self._pending = b""
                    return b"".join(out)
            elif pending[-1:] not in (b"\n", b"\r") and chunk.startswith(_FIELD_STARTS) and _line_complete(pending):
                # the upstream dropped the line end between two fields
                pending += b"\n"
        scan = max(0, len(pending) - 3)
        buf = pending + chunk if pending else chunk
        pos = 0
        i = buf.find(b"\n\n", scan)
        j = buf.find(b"\r\n\r\n", scan)
        while i >= 0 or j >= 0:
            if j < 0 or 0 <= i < j:
                end, nxt = i, i + 2
            else:
                end, nxt = j, j + 4
            if end > pos:
                out.append(self._frame(buf[pos:end]))
                if self.terminal:
                    self._pending = b""
                    return b"".join(out)
            pos = nxt
            if 0 <= i < pos:
                i = buf.find(b"\n\n", pos)
            if 0 <= j < pos:
                j = buf.find(b"\r\n\r\n", pos)
        rest = buf[pos:] if pos else buf
        if rest and _complete(rest, need_event=True):
            # an undelimited frame that is already whole: send it now, do not wait
            out.append(self._frame(rest))
            rest = b""
        self._pending = rest
        return b"".join(out)

    def finish(self) -> bytes:
        """Upstream EOF: flush a whole trailing frame, drop an incomplete one, and make sure the
        client sees a terminal event."""
        pending, self._pending = self._pending, b""
        if self.terminal:
            return b""
        out = b""
        if pending.strip():
            _, data = _fields(pending)
            if data and all(_valid_json(line) for line in data):
                out = self._frame(pending)
        if not self.terminal:
            out += self._fail(
                502,
                "server_error",
                f"upstream stream closed before a terminal event (last event: {self.last_event or 'none'})",
            )
        return out

    # ------------------------------------------------------------ frames

    def _frame(self, frame: bytes) -> bytes:
        event, lines = _fields(frame)
        if not lines:
            return b""  # comments, keep-alives, event-only frames
        data = lines[0] if len(lines) == 1 else b"\n".join(lines)
        if data == b"[DONE]":
            # not a Responses terminal; the SDK would stop here without ever seeing one
            return self._fail(
                502,
                "server_error",
                f"upstream stream closed before a terminal event (last event: {self.last_event or 'none'})",
            )
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._fail(
                502,
                "server_error",
                f"upstream sent an event that is not valid JSON (last event: {self.last_event or 'none'})",
            )
        if not isinstance(obj, dict):
            return self._fail(
                502,
                "server_error",
                f"upstream sent an event that is not a JSON object (last event: {self.last_event or 'none'})",
            )
        ptype = obj.get("type")
        ename = event.decode("utf-8", "replace") if event is not None else None
        if ename is not None and (ename in _TERMINAL or not isinstance(ptype, str)):
            etype = ename
        elif isinstance(ptype, str):
            etype = ptype
        else:
            etype = ""
        seq = obj.get("sequence_number")
        resp = obj.get("response")
        if not isinstance(resp, dict):
            resp = None
        if (
            etype in _TERMINAL_ERR
            or obj.get("error") is not None
            or (resp is not None and resp.get("error") is not None)
            or ("code" in obj and "message" in obj)
        ):
            # the error frame takes the upstream's own sequence number when it has one
            if isinstance(seq, int) and seq > self._seq:
                self._seq = seq - 1
            return self._fail_from(obj, resp)
        if isinstance(seq, int) and seq > self._seq:
            self._seq = seq
        if etype:
            self.last_event = etype

        if etype == "response.output_item.done":
            item = obj.get("item")
            idx = obj.get("output_index")
            if isinstance(idx, int) and not isinstance(idx, bool):
                self._items[idx] = item
            else:
                self._unindexed.append(item)
        elif etype in _TERMINAL_OK:
            self.terminal = True
            self.completed = True
            if resp is not None:
                self.usage = usage_from_responses(resp.get("usage"))
                if not resp.get("output") and (self._items or self._unindexed):
                    resp["output"] = [self._items[k] for k in sorted(self._items)] + self._unindexed
                    lines = [orjson.dumps(obj)]
        elif resp is not None and self._response_id is None:
            rid = resp.get("id")
            if isinstance(rid, str):
                self._response_id = rid
                self._created_at = resp.get("created_at")
                model = resp.get("model")
                self._model = model if isinstance(model, str) else None

        if len(lines) == 1:
            body = b"data: " + lines[0] + b"\n\n"
        else:
            body = b"".join([b"data: " + line + b"\n" for line in lines]) + b"\n"
        if event is not None:
            return b"event: " + event + b"\n" + body
        return body

    # ------------------------------------------------------------ errors

    def fail(self, status: int, message: str, code: str | None = None) -> bytes:
        """End the stream now with a terminal error of the client's kind (e.g. the gateway lost
        the upstream mid-stream); b"" if a terminal event already went out."""
        if self.terminal:
            return b""
        self._pending = b""
        return self._fail(status, code or default_code(status), message)

    def _fail_from(self, obj: dict[str, Any], resp: dict[str, Any] | None) -> bytes:
        raw = obj.get("error")
        err: dict[str, Any] | None = raw if isinstance(raw, dict) else None
        if err is None and resp is not None and isinstance(resp.get("error"), dict):
            err = resp["error"]
        src = err if err is not None else obj
        status = _status_of(obj, err, resp)
        message = src.get("message")
        if not isinstance(message, str) or not message:
            message = obj.get("message") if isinstance(obj.get("message"), str) else None
        if not message:
            message = raw if isinstance(raw, str) and raw else "upstream error"
        code = src.get("code") or src.get("type") or obj.get("code")
        if not isinstance(code, str) or not code or code == "error":
            code = default_code(status) if not isinstance(code, int) else str(code)
        param = src.get("param")
        return self._fail(status, code, message, param=param if isinstance(param, str) else None, base=resp)

    def _fail(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        base: dict[str, Any] | None = None,
    ) -> bytes:
        self.terminal = True
        self.completed = False
        code = sanitize_error_text(code, FIELD_LIMIT)
        message = sanitize_error_text(message, MESSAGE_LIMIT)
        self.error = (status, code, message)
        seq = self._seq + 1
        self._seq = seq
        if not self.codex_client:
            payload: dict[str, Any] = {
                "type": "error",
                "code": code,
                "message": message,
                "param": sanitize_error_text(param, FIELD_LIMIT) if param else None,
                "sequence_number": seq,
            }
            return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"
        response = failed_response(
            base,
            response_id=self._response_id,
            created_at=self._created_at,
            model=self._model,
            code=code,
            message=message,
        )
        payload = {"type": "response.failed", "sequence_number": seq, "response": response}
        return b"event: response.failed\ndata: " + orjson.dumps(payload) + b"\n\n"


def failed_response(
    base: dict[str, Any] | None,
    *,
    response_id: str | None,
    created_at: Any,
    model: str | None,
    code: str,
    message: str,
) -> dict[str, Any]:
    """A Response object with ``status: failed`` that the openai SDK and Codex parse."""
    response: dict[str, Any] = {
        "id": response_id or "resp_" + uuid.uuid4().hex,
        "object": "response",
        "created_at": created_at if isinstance(created_at, int | float) else int(time.time()),
        "status": "failed",
        "model": model or "",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "incomplete_details": None,
        "usage": None,
    }
    if base:
        response.update(base)
        response["status"] = "failed"
    response["error"] = {"code": code, "message": message}
    return response
