"""Routing traces: as a client sees them (``X-Crossroute-Trace: 1``), and the recent calls' traces
kept in memory (``TraceRing``, a bounded ring) for the management API and the panel."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from ..usage.records import key_id

if TYPE_CHECKING:
    from ..call import Attempt, Call
    from ..gateway import Gateway
    from .events import CallEnded

__all__ = ["MAX_HEADER", "RING", "TraceRing", "allowed", "find_trace", "header_value", "recent_traces",
           "trace_dict"]

MAX_HEADER = 8 * 1024  # a trace header longer than this is cut (the full trace is in the request log)


def trace_dict(call: Call) -> dict[str, object]:
    """The trace of one call: its routing steps and each upstream attempt, times relative to its start."""
    t0 = call.started
    steps = []
    for step in call.trace.steps if call.trace is not None else ():
        s = dict(step)
        s["t"] = round((s["t"] - t0) * 1000, 3)
        steps.append(s)
    attempts = [{
        "credential": a.credential_id, "upstream_model": a.upstream_model, "wire": a.wire,
        "status": a.status, "error": a.error,
        "ms": round(((a.end or a.start) - a.start) * 1000, 3),
    } for a in call.attempts]
    return {"call": call.id, "model": call.model, "steps": steps, "attempts": attempts}


def header_value(call: Call) -> str:
    raw = orjson.dumps(trace_dict(call)).decode()
    return raw if len(raw) <= MAX_HEADER else raw[: MAX_HEADER - 3] + "..."


# ------------------------------------------------------------------ the recent calls' traces

RING = 1000  # traced calls kept in memory


class TraceRing:
    """Observer keeping the routing traces of the newest ``RING`` calls. It keeps the trace's steps
    and attempts (not the call, whose body may be large) and renders them when asked."""

    def __init__(self, size: int = RING) -> None:
        self.ring: deque[tuple[Any, ...]] = deque(maxlen=size)

    def attempt_ended(self, call: Call, attempt: Attempt) -> None:
        return None

    def call_ended(self, event: CallEnded) -> None:
        call = event.call
        if call is None or (call.trace is None and not call.attempts):
            return
        self.ring.append((event.request_id, time.time() - time.monotonic(), event.method, event.path, event.status,
                          event.started, event.ended, call.id, call.model, call.credential_id, call.client_key,
                          call.started, call.trace, call.attempts))

    @staticmethod
    def render(item: tuple[Any, ...]) -> dict[str, Any]:
        rid, offset, method, path, status, ev_started, ev_ended, call_id, model, cred, key, started, trace, \
            attempts = item
        view: Any = _View(call_id, model, started, trace, attempts)
        return {
            "request_id": rid, "ts": round(ev_started + offset, 3), "method": method, "path": path,
            "status": status, "model": model, "credential": cred, "client_key": key_id(key),
            "duration_ms": round((ev_ended - ev_started) * 1000, 3), "trace": trace_dict(view),
        }


class _View:
    """The parts of a Call that ``trace_dict`` reads."""

    __slots__ = ("attempts", "id", "model", "started", "trace")

    def __init__(self, call_id: int, model: str, started: float, trace: Any, attempts: list[Any]) -> None:
        self.id, self.model, self.started, self.trace, self.attempts = call_id, model, started, trace, attempts


def recent_traces(gw: Gateway, limit: int = 100) -> list[dict[str, Any]]:
    """The newest kept traces, newest first ([] when traces are not kept)."""
    ring: TraceRing | None = gw.observers.named.get("traces")
    if ring is None:
        return []
    items = list(ring.ring)
    items.reverse()
    return [TraceRing.render(i) for i in items[: max(0, int(limit))]]


def find_trace(gw: Gateway, request_id: str) -> dict[str, Any] | None:
    ring: TraceRing | None = gw.observers.named.get("traces")
    if ring is None:
        return None
    for item in reversed(ring.ring):
        if item[0] == request_id:
            return TraceRing.render(item)
    return None


def allowed(gw: Gateway, call: Call) -> bool:
    """Whether the client key of ``call`` may see its trace in ``x-crossroute-trace``:
    every key unless the settings name the keys that may (``routing-trace-keys``)."""
    keys = getattr(gw.settings, "routing_trace_keys", None)
    if keys is None:
        return True
    return call.client_key is not None and call.client_key in keys
