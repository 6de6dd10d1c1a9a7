"""Routing traces: as a client sees them (``X-Crossroute-Trace: 1``), and the recent calls' traces
kept in memory (``TraceRing``, a bounded ring) for the management API and the panel."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from time import time as _wall
from typing import TYPE_CHECKING, Any

import orjson

from ..routing.explain import render_steps
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
    return _render(call.id, call.model, call.started, call.trace, [_attempt(a) for a in call.attempts])


def _attempt(a: Attempt) -> tuple[str, str, str, int, str | None, float]:
    """What a trace shows of an attempt, as atomic values."""
    return (a.credential_id, a.upstream_model, a.wire, a.status, a.error, (a.end or a.start) - a.start)


def _render(call_id: int, model: str, t0: float, entries: Iterable[Any] | None,
            attempts: Iterable[tuple[str, str, str, int, str | None, float]]) -> dict[str, object]:
    steps = []
    for step in render_steps(entries) if entries is not None else ():
        s = dict(step)
        s["t"] = round((s["t"] - t0) * 1000, 3)
        steps.append(s)
    return {"call": call_id, "model": model, "steps": steps, "attempts": [{
        "credential": cid, "upstream_model": um, "wire": wire, "status": status, "error": error,
        "ms": round(took * 1000, 3),
    } for cid, um, wire, status, error, took in attempts]}


def header_value(call: Call) -> str:
    raw = orjson.dumps(trace_dict(call)).decode()
    return raw if len(raw) <= MAX_HEADER else raw[: MAX_HEADER - 3] + "..."


# ------------------------------------------------------------------ the recent calls' traces

RING = 1000  # traced calls kept in memory


class TraceRing:
    """Observer keeping the routing traces of the newest ``RING`` calls, rendered when asked.

    It keeps neither the call (whose body may be large) nor its Trace and Attempt objects: each
    kept call is one tuple. The common call (one pick, one attempt) is kept flat: the call's fields,
    ``_FLAT``, the pick's record (``routing.explain.record``) with its candidate list and selector
    replaced by ``_held`` handles, the attempt's fields and its start and end. Such a tuple holds
    only strings, numbers and None (when the pick's ``more`` does too), so the garbage collector
    stops tracking it at its first pass instead of walking the whole ring at every collection
    (that walk cost more than the rest of the ring's work). Any other call is kept as the call's
    fields, ``_NESTED``, the trace's entries, the attempts as ``_attempt`` makes them."""

    def __init__(self, size: int = RING) -> None:
        self.ring: deque[tuple[Any, ...]] = deque(maxlen=size)

    wants_attempts = False  # told of finished calls only (Hub.attempts)

    def attempt_ended(self, call: Call, attempt: Attempt) -> None:
        return None

    def call_ended(self, event: CallEnded) -> None:
        call = event.call
        if call is None:
            return
        trace = call.trace
        attempts = call.attempts
        if trace is not None and len(trace) == 1 and len(attempts) == 1:
            r = trace[0]
            if type(r) is tuple:
                a = attempts[0]
                t, candidates, model, selector, outcome, more = r
                hc, hs = id(candidates), id(selector)
                if hc not in _held or hs not in _held:
                    _hold(candidates, selector)
                self.ring.append((event.request_id, _wall(), event.method, event.path, event.status, event.started,
                                  event.ended, call.id, call.model, call.credential_id, call.client_key, call.started,
                                  _FLAT, t, hc, model, hs, outcome, more, _epoch, a.credential_id, a.upstream_model,
                                  a.wire, a.status, a.error, a.start, a.end))
                return
        if trace is None and not attempts:
            return
        self.ring.append((event.request_id, _wall(), event.method, event.path, event.status, event.started,
                          event.ended, call.id, call.model, call.credential_id, call.client_key, call.started,
                          _NESTED, () if trace is None else tuple(trace), tuple([_attempt(a) for a in attempts])))

    @staticmethod
    def render(item: tuple[Any, ...]) -> dict[str, Any]:
        rid, wall, method, path, status, ev_started, ev_ended, call_id, model, cred, key, started, form = item[:13]
        if form is _FLAT:
            t, hc, pick_model, hs, outcome, more, epoch, cid, um, wire, code, error, start, end = item[13:]
            candidates, selector = _held.get(hc), _held.get(hs)
            if epoch != _epoch or candidates is None or selector is None:  # let go since (see _hold)
                entries: Iterable[Any] = ({"step": "note", "t": t,
                                           "message": "the candidates of this pick are no longer kept"},)
            else:
                entries = ((t, candidates, pick_model, selector, outcome, more),)
            attempts: Iterable[Any] = ((cid, um, wire, code, error, (end or start) - start),)
        else:
            entries, attempts = item[13], item[14]
        return {
            "request_id": rid, "ts": round(wall - (ev_ended - ev_started), 3), "method": method, "path": path,
            "status": status, "model": model, "credential": cred, "client_key": key_id(key),
            "duration_ms": round((ev_ended - ev_started) * 1000, 3),
            "trace": _render(call_id, model, started, entries, attempts),
        }


# The candidate lists and selectors of the kept picks, by ``id()`` (held here, so that an id is
# not reused while a ring entry names it). They are the router's own objects, shared by every
# call until a reload makes new ones; past ``_HOLD`` of them all are let go (``_epoch`` counts
# that) and the older entries render without their candidates.
_HOLD = 4096
_held: dict[int, Any] = {}
_epoch = 0


def _hold(*objs: Any) -> None:
    global _epoch
    if len(_held) + len(objs) > _HOLD:
        _held.clear()
        _epoch += 1
    for obj in objs:
        _held[id(obj)] = obj


_FLAT, _NESTED = "flat", "nested"  # how a kept call holds its trace (see TraceRing)


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
