"""Routing traces as a client sees them (``X-Crossroute-Trace: 1``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from ..call import Call

__all__ = ["MAX_HEADER", "header_value", "trace_dict"]

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
