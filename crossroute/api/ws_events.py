"""The events of the Responses API over WebSocket as crossroute writes them, and the request-log
glue of a session (``observe/request_log.py``, used when present).

- ``error_event``: ``{"type":"error","status":…,"error":{"type","code","message","param"}}``, the
  shape the service and the openai SDK (``ResponseWsError``) use;
- ``ws_error_shape``: an SSE-style ``error`` event (``code``/``message`` at the top, as the Responses
  framer renders it) with that ``error`` object added;
- ``frames_of``: the JSON payloads of SSE events (one WebSocket text frame each).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ..formats.responses_framer import default_code
from ..formats.sse import SSEParser

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["error_event", "frames_of", "log_rejected", "open_log", "ws_error_shape"]

log = logging.getLogger("crossroute")

_STATUS_OF_CODE = {"rate_limit_exceeded": 429, "insufficient_quota": 429, "invalid_api_key": 401,
                   "model_not_found": 404, "server_error": 502, "invalid_request_error": 400,
                   "previous_response_not_found": 400, "websocket_connection_limit_reached": 400}


def error_event(status: int, message: str, *, code: str | None = None, param: str | None = None,
                etype: str | None = None) -> dict[str, Any]:
    """An ``error`` event as the Responses WebSocket sends it."""
    return {"type": "error", "status": status,
            "error": {"type": etype or ("invalid_request_error" if status < 500 else "server_error"),
                      "code": code or default_code(status), "message": message, "param": param}}


def frames_of(chunk: bytes, parser: SSEParser | None = None) -> list[bytes]:
    """The JSON payloads of the SSE events in ``chunk`` (one WebSocket text frame each; ``[DONE]``
    and empty events left out). With ``parser`` (one per stream) an event split across chunks is
    reassembled; without, ``chunk`` is read as whole events. ``SSEError`` when it is not SSE."""
    one = parser is None
    p = SSEParser() if one else parser
    events = p.feed(chunk)
    if one:
        tail = p.flush()
        if tail is not None:
            events.append(tail)
    return [ev.data for ev in events if ev.data and ev.data != b"[DONE]"]


def ws_error_shape(obj: dict[str, Any]) -> dict[str, Any]:
    """An SSE-style ``error`` event (code/message at the top) with the WebSocket ``error`` object added."""
    if isinstance(obj.get("error"), dict):
        return obj
    code = obj.get("code")
    shaped = dict(obj)
    shaped["error"] = {"type": "invalid_request_error" if _STATUS_OF_CODE.get(code, 502) < 500 else "server_error",
                       "code": code, "message": obj.get("message") or "upstream error", "param": obj.get("param")}
    if "status" not in shaped and isinstance(code, str) and code in _STATUS_OF_CODE:
        shaped["status"] = _STATUS_OF_CODE[code]
    return shaped


class _NoLog:
    def client_frame(self, data: bytes | str) -> None: ...
    def upstream_event(self, data: bytes | str) -> None: ...
    def error(self, message: str) -> None: ...
    def close(self, who: str, code: int | None = None, reason: str = "") -> None: ...


def _request_log() -> Any:
    try:
        return importlib.import_module("crossroute.observe.request_log")
    except ModuleNotFoundError as exc:
        if exc.name != "crossroute.observe.request_log":
            raise
        return None


def open_log(gw: Gateway, meta: dict[str, Any]) -> Any:
    mod = _request_log()
    opener = getattr(mod, "open_ws", None) if mod is not None else None
    if opener is None:
        return _NoLog()
    try:
        return opener(gw, meta)
    except Exception:
        log.exception("request log: open_ws failed")
        return _NoLog()


def log_rejected(gw: Gateway, meta: dict[str, Any], status: int, reason: str) -> None:
    mod = _request_log()
    fn = getattr(mod, "rejected_upgrade", None) if mod is not None else None
    if fn is not None:
        try:
            fn(gw, meta, status, reason)
        except Exception:
            log.exception("request log: rejected_upgrade failed")
